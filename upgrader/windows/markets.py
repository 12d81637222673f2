"""Market sessions from ``exchange_calendars``: holidays, early closes and lunch breaks.

Importing exchange_calendars (and pandas) and building a calendar costs ~1.5 s of CPU, which every
`apply` would pay before touching a host.  So sessions are kept on disk, one small JSON file per
market and month, under the cache directory and the library's version: a new exchange_calendars
release (new holiday data) starts a new cache, and a file that cannot be read is simply built again.
Only a cold cache imports the library.

MICs the library does not ship are mapped, explicitly, to a calendar whose
sessions and holidays they follow (``FALLBACKS``); any other unknown MIC is an
error, never a silently "always closed" market.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import warnings
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from upgrader.errors import UpgraderError

# Documented fallbacks for MICs exchange_calendars (4.13) does not know.  Both
# follow the NYSE holiday and early-close schedule with a 09:30–16:00 ET core
# session; Cboe's extended options sessions (global trading hours) are NOT
# modelled — add them to windows.markets via another calendar if they matter.
FALLBACKS: dict[str, str] = {
    "XCBO": "XNYS",  # Cboe Options Exchange: US equity options, NYSE holidays, 09:30–16:00 ET
    "XCHI": "XNYS",  # NYSE Chicago: a NYSE-group equities venue, same sessions as XNYS
    # CME Group's venues by their ISO 10383 MICs; exchange_calendars calls the Globex calendar CMES.
    "XCME": "CMES",  # Chicago Mercantile Exchange
    "XCBT": "CMES",  # Chicago Board of Trade
    "XNYM": "CMES",  # New York Mercantile Exchange
    "XCEC": "CMES",  # COMEX
    "IFUS": "IEPA",  # ICE Futures U.S. (exchange_calendars: IEPA)
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
    return frozenset(set(_calendar_names()) | FALLBACKS.keys())


def calendar_name(mic: str) -> str:
    """The exchange_calendars name to use for ``mic``, or UnknownMarketError."""
    if mic in FALLBACKS:
        return FALLBACKS[mic]
    if mic in known_markets():
        return mic
    raise UnknownMarketError(
        f"market {mic} is not known to exchange_calendars {library_version()}",
        "use a MIC such as XNYS, XNAS, XTSE, XCBO; or ask for a fallback in upgrader/windows/markets.py",
    )


def market_zone(mic: str, now: dt.datetime) -> ZoneInfo:
    """The market's own timezone (for showing operators local times)."""
    return ZoneInfo(_month(calendar_name(mic), now.year, now.month)["tz"])


def market_name(mic: str) -> str:
    """``mic`` as written, with the calendar that answers for it when that is another name (XCME → CMES)."""
    name = calendar_name(mic)
    return mic if name == mic else f"{mic} ({name} calendar)"


def sessions(mic: str, start: dt.datetime, end: dt.datetime) -> list[Session]:
    """Trading stretches of ``mic`` overlapping [start, end) (aware datetimes)."""
    name = calendar_name(mic)
    first, last = start.date() - dt.timedelta(days=3), end.date() + dt.timedelta(days=3)
    out: list[Session] = []
    for year, month in _months(first, last):
        for row in _month(name, year, month)["sessions"]:
            day = dt.date.fromisoformat(row["date"])
            if not first <= day <= last:
                continue
            for lo, hi in _stretches(row):
                if hi > start and lo < end:
                    out.append(Session(mic, day, lo, hi))
    return out


def _stretches(row: dict[str, Any]) -> list[tuple[dt.datetime, dt.datetime]]:
    t = {k: dt.datetime.fromisoformat(v) for k, v in row.items() if k != "date" and v is not None}
    if "break_start" not in t or "break_end" not in t:
        return [(t["open"], t["close"])]
    return [(t["open"], t["break_start"]), (t["break_end"], t["close"])]


def _months(first: dt.date, last: dt.date) -> list[tuple[int, int]]:
    out, (y, m) = [], (first.year, first.month)
    while (y, m) <= (last.year, last.month):
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


# ---------------------------------------------------------------- the cache
@cache
def library_version() -> str:
    return metadata.version("exchange_calendars")


def cache_root() -> Path:
    """$UPGRADER_CACHE_DIR, else $XDG_CACHE_HOME/upgrader, else ~/.cache/upgrader."""
    base = os.environ.get("UPGRADER_CACHE_DIR")
    if not base:
        base = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "upgrader")
    return Path(base)


def cache_dir() -> Path:
    """cache_root()/calendars/VERSION."""
    return cache_root() / "calendars" / library_version()


CACHE_LIMIT = 16 << 20  # bytes of one cached file (a month of one market is ~3 KB; the names ~20 KB)


_building = threading.Lock()  # the calendar prefetch thread and the main thread may ask at once


@lru_cache(maxsize=256)
def _month(name: str, year: int, month: int) -> dict[str, Any]:
    """{"tz": zone, "sessions": [{date, open, close, break_start, break_end}, ...]} for one month."""
    month_data: dict[str, Any] = _cached(f"{name}-{year:04d}-{month:02d}.json", lambda: _build_month(name, year, month))
    return month_data


@cache
def _calendar_names() -> tuple[str, ...]:
    # names-2: every name and alias the library accepts (names.json kept only X??? MICs, dropping CMES, IEPA, ARCX).
    return tuple(_cached("names-2.json", _build_names))


def _read_cached(path: Path) -> Any:
    """A cached file only if nobody but the operator could have written it (loading.private): a planted
    calendar with no sessions would open a window while the market trades.  None: build it again."""
    from upgrader.loading import private

    data = private.read_private(path, cache_root(), CACHE_LIMIT, warn=False)
    try:
        return None if data is None else json.loads(data)
    except ValueError:
        return None


def _cached(filename: str, build: Any) -> Any:
    path = cache_dir() / filename
    found = _read_cached(path)
    if found is not None:
        return found
    with _building:
        found = _read_cached(path)  # another thread may have built it while this one waited
        if found is not None:
            return found
        data = build()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(data, sort_keys=True))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home still works, just without the speed-up
    return data


def _build_names() -> list[str]:
    import exchange_calendars as xcals

    return sorted(xcals.get_calendar_names(include_aliases=True))


def _build_month(name: str, year: int, month: int) -> dict[str, Any]:
    import exchange_calendars as xcals
    import pandas as pd

    first = dt.date(year, month, 1)
    last = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    with warnings.catch_warnings():  # the library's own pandas deprecations are not ours to act on
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        cal = xcals.get_calendar(name, start=pd.Timestamp(first), end=pd.Timestamp(last))

    def iso(value: Any) -> str | None:
        return None if pd.isna(value) else value.to_pydatetime().isoformat()

    rows = [
        {
            "date": label.date().isoformat(),
            "open": iso(row["open"]),
            "close": iso(row["close"]),
            "break_start": iso(row["break_start"]),
            "break_end": iso(row["break_end"]),
        }
        for label, row in cal.schedule.iterrows()
    ]
    return {"tz": str(cal.tz), "sessions": rows}
