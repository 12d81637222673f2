"""Market sessions from ``exchange_calendars``: holidays, early closes and lunch breaks.

Building a calendar costs ~0.2 s per market, so calendars are cached per
process and only ever built for a bounded range of whole months around the
time asked about (the cache key is the month range, so successive calls in
the same month reuse one calendar).

MICs the library does not ship are mapped, explicitly, to a calendar whose
sessions and holidays they follow (``FALLBACKS``); any other unknown MIC is an
error, never a silently "always closed" market.
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd

from upgrader.errors import UpgraderError

# Documented fallbacks for MICs exchange_calendars (4.13) does not know.  Both
# follow the NYSE holiday and early-close schedule with a 09:30–16:00 ET core
# session; Cboe's extended options sessions (global trading hours) are NOT
# modelled — add them to windows.markets via another calendar if they matter.
FALLBACKS: dict[str, str] = {
    "XCBO": "XNYS",  # Cboe Options Exchange: US equity options, NYSE holidays, 09:30–16:00 ET
    "XCHI": "XNYS",  # NYSE Chicago: a NYSE-group equities venue, same sessions as XNYS
}


class UnknownMarketError(UpgraderError):
    """A MIC neither exchange_calendars nor FALLBACKS knows."""

    reference = "unknown-market"


@dataclass(frozen=True)
class Session:
    """One stretch of continuous trading (a lunch break splits a day into two)."""

    market: str
    date: dt.date  # the session label in the market's calendar
    open: dt.datetime  # aware, UTC
    close: dt.datetime  # aware, UTC


def known_markets() -> frozenset[str]:
    """MIC-shaped names the library ships, plus our fallbacks."""
    names = {n for n in xcals.get_calendar_names(include_aliases=True) if len(n) == 4 and n.startswith("X")}
    return frozenset(names | FALLBACKS.keys())


def calendar_name(mic: str) -> str:
    """The exchange_calendars name to use for ``mic``, or UnknownMarketError."""
    if mic in FALLBACKS:
        return FALLBACKS[mic]
    if mic in known_markets():
        return mic
    raise UnknownMarketError(
        f"market {mic} is not known to exchange_calendars {xcals.__version__}",
        "use a MIC such as XNYS, XNAS, XTSE, XCBO; or ask for a fallback in upgrader/windows/markets.py",
    )


def market_zone(mic: str, now: dt.datetime) -> ZoneInfo:
    """The market's own timezone (for showing operators local times)."""
    return ZoneInfo(str(_calendar(calendar_name(mic), *_month_range(now.date(), now.date())).tz))


def sessions(mic: str, start: dt.datetime, end: dt.datetime) -> list[Session]:
    """Trading stretches of ``mic`` overlapping [start, end) (aware datetimes)."""
    name = calendar_name(mic)
    first, last = start.date() - dt.timedelta(days=3), end.date() + dt.timedelta(days=3)
    cal = _calendar(name, *_month_range(first, last))
    rows = cal.schedule.loc[pd.Timestamp(first):pd.Timestamp(last)]
    out: list[Session] = []
    for label, row in rows.iterrows():
        day = label.date()
        for lo, hi in _stretches(row):
            if hi > start and lo < end:
                out.append(Session(mic, day, lo, hi))
    return out


def _stretches(row: pd.Series) -> list[tuple[dt.datetime, dt.datetime]]:
    open_, close = row["open"].to_pydatetime(), row["close"].to_pydatetime()
    if pd.isna(row["break_start"]) or pd.isna(row["break_end"]):
        return [(open_, close)]
    return [(open_, row["break_start"].to_pydatetime()), (row["break_end"].to_pydatetime(), close)]


def _month_range(first: dt.date, last: dt.date) -> tuple[dt.date, dt.date]:
    """Widen to whole months so nearby calls share one cached calendar."""
    start = first.replace(day=1)
    nxt = (last.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return start, nxt - dt.timedelta(days=1)


@lru_cache(maxsize=32)
def _calendar(name: str, start: dt.date, end: dt.date) -> xcals.ExchangeCalendar:
    with warnings.catch_warnings():  # the library's own pandas deprecations are not ours to act on
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return xcals.get_calendar(name, start=pd.Timestamp(start), end=pd.Timestamp(end))
