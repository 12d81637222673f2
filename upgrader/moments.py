"""Aware times: the one parser of every ``--now`` (and of a Temporal run's ``now``), and the guards' one check.

A time without a UTC offset means a different moment on every controller, and the trading-window guard
must never guess which one an operator meant: it is refused, never read as UTC or as local time.  Years
outside loading/bounded_read.YEARS are refused too: window arithmetic near year 9999 overflows.
"""

from __future__ import annotations

import argparse
import datetime as dt

from upgrader.loading import bounded_read


class NotAwareTime(argparse.ArgumentTypeError, ValueError):
    """A time that is not ISO 8601 with an offset in a sane year: argparse shows the message as it is
    (ArgumentTypeError), and callers outside argparse may catch it as the ValueError it also is."""


def aware(text: str) -> dt.datetime:
    """``text`` as an aware datetime (its own offset kept), or NotAwareTime saying what to write instead."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise NotAwareTime(f"{text!r} is not an ISO 8601 time, e.g. 2026-11-24T11:00-05:00") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise NotAwareTime(f"{text!r} has no UTC offset — add one, e.g. {text}-05:00 or {text}Z")
    if not bounded_read.reasonable_year(value.year):
        raise NotAwareTime(f"{text!r} is outside the years {bounded_read.YEARS[0]}-{bounded_read.YEARS[1]}")
    return value


def utc(now: dt.datetime, name: str = "now") -> dt.datetime:
    """``now`` in UTC; a naive one is a programming error (every caller's input went through ``aware``)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return now.astimezone(dt.UTC)
