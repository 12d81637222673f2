"""upgrader/moments.py: the one parser of aware times, used by every --now and by the guards."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upgrader import moments
from upgrader.cli.main import build_parser
from upgrader.loading import bounded_read

ROOT = Path(moments.__file__).parent


def _now_options() -> dict[str, argparse.Action]:
    parser = build_parser()
    commands: dict[str, argparse.ArgumentParser] = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr, assignment]
    return {name: a for name, cmd in commands.items() for a in cmd._actions if "--now" in a.option_strings}


def test_every_now_option_uses_the_one_parser() -> None:
    found = _now_options()
    assert {"apply", "resume", "windows"} <= set(found)
    assert {name: a.type for name, a in found.items()} == dict.fromkeys(found, moments.aware)


def test_no_command_parses_times_on_its_own() -> None:
    own = [str(p.relative_to(ROOT)) for p in (ROOT / "commands").glob("*.py") if "fromisoformat" in p.read_text()]
    assert own == []


@given(st.text(max_size=40))
def test_any_text_is_an_aware_time_or_a_clear_refusal(text: str) -> None:
    try:
        value = moments.aware(text)
    except moments.NotAwareTime as exc:
        assert repr(text) in str(exc)
        assert isinstance(exc, ValueError)  # callers outside argparse catch it as one
        return
    assert value.utcoffset() is not None and bounded_read.reasonable_year(value.year)


@given(st.datetimes(timezones=st.timezones(), min_value=dt.datetime(2000, 1, 2), max_value=dt.datetime(8999, 1, 1)))
def test_an_aware_time_reads_back_as_the_same_moment(when: dt.datetime) -> None:
    if when.utcoffset() is None:  # an imaginary local time in a zone's gap
        return
    # Compared as written: == between zones is False for a wall time a zone's fold makes ambiguous.
    assert moments.aware(when.isoformat()).isoformat() == when.isoformat()


@pytest.mark.reliability(
    "--now without a UTC offset, not a time, or in year 9999", "refused, the message naming the fix"
)
def test_naive_and_far_times_are_refused_with_the_fix(record_property: Callable[[str, object], None]) -> None:
    answers = {}
    for text in ("2026-11-28T02:00:00", "soon", "9999-12-31T23:59:00+00:00"):
        with pytest.raises(moments.NotAwareTime) as caught:
            moments.aware(text)
        answers[text] = str(caught.value)
    assert "no UTC offset" in answers["2026-11-28T02:00:00"]
    assert "not an ISO 8601 time" in answers["soon"]
    assert "outside the years" in answers["9999-12-31T23:59:00+00:00"]
    record_property("observed", "; ".join(answers.values()))


def test_the_guards_refuse_a_naive_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        moments.utc(dt.datetime(2026, 11, 24, 11, 0))
    assert moments.utc(dt.datetime(2026, 11, 24, 11, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))).hour == 16
