"""Operator overrides for trading windows: closures the calendar library does not know yet, extra freeze days."""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from upgrader.models.types import Mic, SafeText, Strict


class Closure(Strict):
    """The market does not trade on this session date (e.g. a national day of mourning)."""

    market: Mic
    date: dt.date = Field(strict=False, description="session date in the market's own calendar, YYYY-MM-DD")
    reason: SafeText = Field(min_length=1, description="why; shown to operators")


class ExtraFreeze(Strict):
    """A whole local day on which no upgrade may start."""

    date: dt.date = Field(strict=False, description="YYYY-MM-DD")
    reason: SafeText = Field(min_length=1, description="why; shown to operators")
    timezone: str = Field("America/New_York", description="IANA zone the day is counted in")


class Overrides(Strict):
    closures: list[Closure] = Field(default_factory=list)
    freeze: list[ExtraFreeze] = Field(default_factory=list)
