"""The window guard at fixed times: sessions, holidays, early closes, margins, DST, freezes, overrides."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from upgrader.cli.main import main
from upgrader.errors import InputError, RefusedError, UpgraderError
from upgrader.loading.inputs import load_inventory, load_playbook
from upgrader.models.inventory import Inventory
from upgrader.models.overrides import Overrides
from upgrader.models.playbook import Windows
from upgrader.windows import (
    UnknownMarketError,
    break_glass,
    evaluate,
    evaluate_windows,
    load_overrides,
    market_problems,
)

ROOT = Path(__file__).resolve().parents[2]
NY = ZoneInfo("America/New_York")
UTC = dt.UTC
WEEKEND: dict[str, Any] = {"maintenance": [{"start": "Fri 20:00", "end": "Sun 18:00", "timezone": "America/New_York"}]}


def inventory(**dcs: tuple[str, list[str]]) -> Inventory:
    return Inventory.model_validate(
        {
            "name": "t",
            "defaults": {"user": "deploy"},
            "roles": {"oe": ["ordergw"]},
            "datacenters": {
                name: {
                    "timezone": tz,
                    "markets": mics,
                    "hosts": {f"{name}-h1": {"address": "192.0.2.1", "roles": ["oe"]}},
                }
                for name, (tz, mics) in dcs.items()
            },
        }
    )


NY5 = inventory(ny5=("America/New_York", ["XNYS"]))


def ny(year: int, month: int, day: int, hour: int, minute: int) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=NY)


def utc(year: int, month: int, day: int, hour: int, minute: int) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def verdict(at: dt.datetime, inv: Inventory = NY5, overrides: Overrides | None = None, **windows: object):
    return evaluate_windows(Windows.model_validate(windows), inv, list(inv.datacenters), at, overrides)


def test_weekday_session_blocks_and_says_until_when() -> None:
    v = verdict(ny(2026, 11, 24, 11, 0), **WEEKEND)
    assert not v.allowed
    market = next(b for b in v.blockers if b.kind == "market")
    assert (market.what, market.until, market.zone) == ("XNYS is open", utc(2026, 11, 24, 21, 0), "America/New_York")
    assert "until Tue 2026-11-24 16:00 America/New_York (2026-11-24 21:00 UTC)" in market.text
    assert {b.kind for b in v.blockers} == {"market", "maintenance"}
    assert v.next_allowed == utc(2026, 11, 28, 1, 0)  # Fri 20:00 EST
    assert "next allowed window: Fri 2026-11-27 20:00 America/New_York" in v.text()


def test_without_maintenance_windows_the_run_may_start_after_the_close() -> None:
    v = verdict(ny(2026, 11, 24, 11, 0))
    assert v.next_allowed == utc(2026, 11, 24, 21, 0)
    assert v.windows[0].end == utc(2026, 11, 25, 14, 0)  # 09:30 open minus the 30m margin


def test_weekend_inside_maintenance_window() -> None:
    v = verdict(ny(2026, 11, 28, 10, 0), **WEEKEND)
    assert v.allowed and v.blockers == ()
    assert v.closes_at == ny(2026, 11, 29, 18, 0)
    assert v.next_allowed == ny(2026, 12, 4, 20, 0)


def test_exchange_holiday_is_no_market_blocker_but_still_outside_the_window() -> None:
    thanksgiving = ny(2026, 11, 26, 12, 0)
    v = verdict(thanksgiving, **WEEKEND)
    assert [b.kind for b in v.blockers] == ["maintenance"]
    free = verdict(thanksgiving)
    assert free.allowed
    assert free.closes_at == ny(2026, 11, 27, 9, 0)


def test_early_close_day_after_thanksgiving() -> None:
    blocked = verdict(ny(2026, 11, 27, 12, 30))
    assert blocked.blockers[0].until == ny(2026, 11, 27, 13, 0)
    assert blocked.next_allowed == ny(2026, 11, 27, 13, 0)
    assert verdict(ny(2026, 11, 27, 13, 30)).allowed


def test_market_margin_before_the_open() -> None:
    v = verdict(ny(2026, 11, 24, 9, 10))
    assert [(b.kind, b.until) for b in v.blockers] == [("margin", ny(2026, 11, 24, 9, 30))]
    assert "XNYS opens at Tue 2026-11-24 09:30 America/New_York" in v.blockers[0].text
    assert verdict(ny(2026, 11, 24, 8, 59)).closes_at == ny(2026, 11, 24, 9, 0)
    assert verdict(ny(2026, 11, 24, 9, 10), market_margin="0s").allowed
    assert not verdict(ny(2026, 11, 24, 8, 0), market_margin="2h").allowed


@pytest.mark.parametrize(
    ("saturday", "end_utc", "thursday", "start_utc"),
    [
        (ny(2026, 3, 7, 12, 0), utc(2026, 3, 8, 22, 0), ny(2026, 3, 5, 17, 0), utc(2026, 3, 7, 1, 0)),  # spring forward
        (
            ny(2026, 10, 31, 12, 0),
            utc(2026, 11, 1, 23, 0),
            ny(2026, 10, 29, 17, 0),
            utc(2026, 10, 31, 0, 0),
        ),  # fall back
    ],
)
def test_maintenance_window_across_dst_changes(saturday, end_utc, thursday, start_utc) -> None:
    assert verdict(saturday, **WEEKEND).closes_at == end_utc
    assert verdict(thursday, **WEEKEND).next_allowed == start_utc


def test_freeze_day_is_a_whole_local_day() -> None:
    freeze = [{"date": "2026-11-28", "reason": "index rebalance", "timezone": "America/New_York"}]
    v = verdict(ny(2026, 11, 28, 10, 0), **WEEKEND, freeze=freeze)
    assert [(b.kind, b.until) for b in v.blockers] == [("freeze", utc(2026, 11, 29, 5, 0))]
    assert "index rebalance" in v.blockers[0].text
    assert v.next_allowed == ny(2026, 11, 29, 0, 0)


def test_override_closure_and_extra_freeze() -> None:
    overrides = Overrides.model_validate(
        {
            "closures": [{"market": "XNYS", "date": "2026-11-24", "reason": "day of mourning"}],
            "freeze": [{"date": "2026-11-25", "reason": "vendor asked", "timezone": "America/New_York"}],
        }
    )
    assert verdict(ny(2026, 11, 24, 11, 0), overrides=overrides).allowed
    v = verdict(ny(2026, 11, 25, 17, 0), overrides=overrides)
    assert [(b.kind, b.what) for b in v.blockers] == [("override", "operator freeze day 2026-11-25")]


def test_chicago_and_toronto_markets() -> None:
    inv = inventory(ch2=("America/Chicago", ["XCBO", "XCHI"]), tr2=("America/Toronto", ["XTSE"]))
    v = verdict(dt.datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("America/Chicago")), inv)
    assert {b.what for b in v.blockers} == {"XCBO is open", "XCHI is open", "XTSE is open"}
    assert {b.until for b in v.blockers} == {utc(2026, 11, 24, 21, 0)}
    assert v.zone == "America/Chicago"
    thanksgiving = verdict(ny(2026, 11, 26, 12, 0), inv)  # US holiday, Toronto trades
    assert [b.what for b in thanksgiving.blockers] == ["XTSE is open"]
    assert thanksgiving.blockers[0].zone == "America/Toronto"
    canada_day = verdict(ny(2026, 7, 1, 12, 0), inv)  # Canadian holiday, US trades
    assert {b.what for b in canada_day.blockers} == {"XCBO is open", "XCHI is open"}


def test_lunch_break_is_not_a_session() -> None:
    inv = inventory(hk=("Asia/Hong_Kong", ["XHKG"]))
    at = dt.datetime(2026, 1, 5, 12, 30, tzinfo=ZoneInfo("Asia/Hong_Kong"))
    assert verdict(at, inv, market_margin=0).closes_at == utc(2026, 1, 5, 5, 0)
    assert not verdict(at, inv).allowed  # the 30m margin before the afternoon reopening


def test_unknown_mic_is_a_clear_error() -> None:
    with pytest.raises(UnknownMarketError, match="XZZZ is not known to exchange_calendars"):
        verdict(ny(2026, 11, 24, 11, 0), markets=["XZZZ"])


def test_unknown_mic_in_inventory_is_located(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text((ROOT / "inventories" / "prod-na.yml").read_text().replace("[XTSE]", "[XTSE, XQQQ]"))
    problems = market_problems(Windows(), None, load_inventory(path))
    assert len(problems) == 1
    assert problems[0].location.line is not None and "XQQQ" in problems[0].message


def test_override_file_example_loads_and_errors_are_located(tmp_path: Path) -> None:
    assert load_overrides(ROOT / "inventories" / "overrides.yml").model.closures[0].market == "XNYS"
    cases = {
        "closures:\n  - market: XNYS\n    date: 2026-13-40\n    reason: bad date\n": [(3, "cannot read value")],
        "closures:\n  - market: XNYS\n    date: 2026-11-24\n    reason: ''\n": [(4, "reason")],
        textwrap.dedent("""\
            closures:
              - market: XQQQ
                date: 2026-11-24
                reason: typo
            freeze:
              - date: 2026-12-31
                reason: year end
                timezone: Mars/Olympus
        """): [(2, "XQQQ"), (8, "Mars/Olympus")],
    }
    bad = tmp_path / "overrides.yml"
    for text, expected in cases.items():
        bad.write_text(text)
        with pytest.raises(InputError) as err:
            load_overrides(bad)
        got = [(p.location.line, p.message) for p in err.value.problems]
        assert [line for line, _ in got] == [line for line, _ in expected], got
        assert all(word in message for (_, message), (_, word) in zip(got, expected, strict=True)), got


def test_playbook_and_unknown_datacenter() -> None:
    playbook = load_playbook(ROOT / "playbooks" / "ordergw-5.2.0.yml").model
    inv = load_inventory(ROOT / "inventories" / "prod-na.yml").model
    assert evaluate(playbook, inv, ["ny5", "ch2", "tr2"], ny(2026, 11, 28, 10, 0)).allowed
    with pytest.raises(UpgraderError, match="nowhere"):
        evaluate(playbook, inv, ["nowhere"], ny(2026, 11, 28, 10, 0))


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        verdict(dt.datetime(2026, 11, 24, 11, 0))


def test_break_glass_needs_a_reason() -> None:
    now = ny(2026, 11, 24, 11, 0)
    for reason in ("", "   \t\n"):
        with pytest.raises(RefusedError):
            break_glass(reason, now)
    record = break_glass("  ordergw rejects  orders ", now, actor="alice", verdict=verdict(now))
    data = record.to_dict()
    assert data["event"] == "guard-bypassed" and data["reason"] == "ordergw rejects orders"
    assert data["at"] == "2026-11-24T16:00:00+00:00" and data["blockers"][0]["kind"] == "market"
    json.dumps(data)


def test_cli_exit_codes_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["windows", "-i", str(ROOT / "inventories" / "prod-na.yml"), str(ROOT / "playbooks" / "ordergw-5.2.0.yml")]
    assert main([*args, "--now", "2026-11-24T11:00-05:00", "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["next_allowed"] == "2026-11-28T01:00:00+00:00"
    assert "XNYS is open" in {b["what"] for b in data["blockers"]}
    assert main([*args, "--now", "2026-11-28T15:00Z", "--days", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("allowed at Sat 2026-11-28 10:00 America/New_York") and "allowed windows:" in out
