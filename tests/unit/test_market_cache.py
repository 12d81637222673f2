"""The on-disk market calendar cache: same sessions as the library, no pandas once warm, robust to junk."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from upgrader.windows import markets

REPO = Path(__file__).resolve().parents[2]
UTC = dt.UTC


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("UPGRADER_CACHE_DIR", str(tmp_path))
    markets._month.cache_clear()
    markets._calendar_names.cache_clear()
    yield tmp_path / "calendars" / markets.library_version()
    markets._month.cache_clear()
    markets._calendar_names.cache_clear()


def _library_sessions(name: str, first: dt.date, last: dt.date) -> list[tuple[dt.datetime, dt.datetime]]:
    """Straight from exchange_calendars, lunch breaks split, for comparison."""
    import exchange_calendars as xcals
    import pandas as pd

    cal = xcals.get_calendar(name, start=pd.Timestamp(first), end=pd.Timestamp(last))
    out = []
    for _, row in cal.schedule.iterrows():
        bounds = [row["open"], row["close"]]
        if not pd.isna(row["break_start"]):
            bounds[1:1] = [row["break_start"], row["break_end"]]
        out += [(bounds[i].to_pydatetime(), bounds[i + 1].to_pydatetime()) for i in range(0, len(bounds), 2)]
    return out


@pytest.mark.parametrize("mic", ["XNYS", "XHKG", "XTSE"])
def test_sessions_match_the_library_cold_and_warm(cache: Path, mic: str) -> None:
    start, end = dt.datetime(2026, 11, 20, tzinfo=UTC), dt.datetime(2027, 1, 10, tzinfo=UTC)
    expected = [
        (lo, hi)
        for lo, hi in _library_sessions(mic, dt.date(2026, 11, 1), dt.date(2027, 1, 31))
        if hi > start and lo < end
    ]
    cold = [(s.open, s.close) for s in markets.sessions(mic, start, end)]
    assert cold == expected
    assert sorted(p.name for p in cache.glob(f"{mic}-*.json")) == [
        f"{mic}-2026-11.json",
        f"{mic}-2026-12.json",
        f"{mic}-2027-01.json",
    ]
    markets._month.cache_clear()  # from here on only the files answer
    assert [(s.open, s.close) for s in markets.sessions(mic, start, end)] == expected


def test_a_damaged_cache_file_is_rebuilt(cache: Path) -> None:
    at = dt.datetime(2026, 11, 27, 15, tzinfo=UTC)  # Black Friday: NYSE closes early at 13:00 ET
    good = markets.sessions("XNYS", at, at + dt.timedelta(hours=1))
    (cache / "XNYS-2026-11.json").write_text('{"tz": "America/New_York", "sessions": [')
    markets._month.cache_clear()
    assert markets.sessions("XNYS", at, at + dt.timedelta(hours=1)) == good
    assert (cache / "XNYS-2026-11.json").read_text().endswith("}")


def test_a_warm_cache_answers_without_importing_pandas(cache: Path) -> None:
    markets.market_zone("XNYS", dt.datetime(2026, 11, 24, tzinfo=UTC))
    markets.sessions("XNYS", dt.datetime(2026, 11, 24, tzinfo=UTC), dt.datetime(2026, 11, 25, tzinfo=UTC))
    probe = (
        "import datetime as dt, sys\n"
        "from upgrader.windows import markets\n"
        "s = markets.sessions('XNYS', dt.datetime(2026, 11, 24, tzinfo=dt.UTC), "
        "dt.datetime(2026, 11, 25, tzinfo=dt.UTC))\n"
        "assert len(s) == 1 and markets.market_zone('XNYS', s[0].open).key == 'America/New_York'\n"
        "assert 'pandas' not in sys.modules and 'exchange_calendars' not in sys.modules, 'imported'\n"
    )
    env = dict(os.environ, UPGRADER_CACHE_DIR=str(cache.parents[1]))
    res = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_unknown_market_is_still_an_error(cache: Path) -> None:
    with pytest.raises(markets.UnknownMarketError, match="XZZZ"):
        markets.calendar_name("XZZZ")
