"""`--now` on apply and resume is a guard override: refused without --reason, audited and notified with one.

The real engine and agent run on fake hosts (tests/fakes); the real clock is stood in US market
hours (a Tuesday, 10:05 New York) and the playbook respects XNYS, so the guard would refuse the run.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.scenario import FROM, TO, Scenario
from upgrader.cli.main import main
from upgrader.commands import guardbypass, live

SATURDAY = "2026-11-28T02:00:00-05:00"
MARKET_HOURS = dt.datetime(2026, 11, 24, 15, 5, tzinfo=dt.UTC)  # Tue 10:05 New York: XNYS is open


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scenario]:
    s = Scenario.build(tmp_path, {"ny": ["ny-1", "ny-2"]}, playbook={"windows": {"markets": ["XNYS"]}})
    s.inventory.write_text(s.inventory.read_text() + "notify:\n  - {url_env: UPG_TEST_HOOK}\n")
    connected: list[str] = []

    def pool(*args: Any, **kwargs: Any) -> Any:
        connected.append("pool")
        return s.hosts.pool()

    monkeypatch.setattr(live, "pool_for", pool)
    monkeypatch.setattr(guardbypass, "wall_clock", lambda: MARKET_HOURS)
    s.connected = connected  # type: ignore[attr-defined]
    yield s
    s.close()


def _apply(s: Scenario, *extra: str) -> int:
    return main(
        [
            "--state-dir",
            str(s.tmp / "state"),
            "apply",
            str(s.playbook),
            "-i",
            str(s.inventory),
            "--artifacts",
            str(s.artifacts),
            "--yes",
            "--log-format",
            "plain",
            *extra,
        ]
    )


def _audit(s: Scenario) -> list[dict[str, Any]]:
    path = s.tmp / "state" / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.reliability(
    "apply --now <a Saturday> during US market hours, without and with --reason",
    "without --reason: exit 1, no host contacted, hosts unchanged, nothing audited; "
    "with --reason: the run goes ahead, the audit log and the webhook both name the bypass, "
    "its reason and the real-time blocker (XNYS is open)",
)
def test_a_simulated_time_is_break_glass(
    fleet: Scenario, hook: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], record_property: Any
) -> None:
    refused = _apply(fleet, "--now", SATURDAY)
    err = capsys.readouterr().err.strip().splitlines()
    assert refused == 1 and err[-1].startswith("error[refused]: --now overrides the window guard"), err
    assert fleet.connected == [] and _audit(fleet) == [] and hook == []  # type: ignore[attr-defined]
    assert set(fleet.versions().values()) == {FROM}

    code = _apply(fleet, "--now", SATURDAY, "--reason", "INC-9 rehearsal of the weekend run")
    assert code == 0, capsys.readouterr()
    [entry] = [e for e in _audit(fleet) if e["action"] == "guard-bypassed"]
    assert entry["reason"] == "INC-9 rehearsal of the weekend run" and entry["command"] == "apply"
    assert entry["guard"]["simulated_now"] == dt.datetime.fromisoformat(SATURDAY).isoformat()
    blockers = [b["what"] for b in entry["guard"]["blockers"]]
    assert "XNYS is open" in blockers
    notices = [e for e in hook if e["event"] == "guard-bypassed"]
    assert len(notices) == 1 and "INC-9" in notices[0]["summary"] and "XNYS is open" in notices[0]["summary"]
    start = json.loads((fleet.tmp / "state" / "runs" / entry["run"] / "journal.jsonl").read_text().splitlines()[0])
    assert start["break_glass"] is True and start["guard"]["reason"] == entry["reason"]
    assert set(fleet.versions().values()) == {TO}
    record_property(
        "observed",
        f"without --reason: exit {refused}, {len(fleet.connected)} pool(s) before the "  # type: ignore[attr-defined]
        f"second run, '{err[-1][:60]}…'; with --reason: exit {code}, audit action "
        f"{entry['action']} blockers {blockers}, {len(notices)} webhook notice "
        f"'{notices[0]['summary'][:80]}…', hosts on {sorted(set(fleet.versions().values()), key=str)}",
    )


def test_reason_without_a_simulated_time_is_refused(fleet: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    assert _apply(fleet, "--reason", "why not") == 1
    assert "nothing is overridden" in capsys.readouterr().err
    assert fleet.connected == []  # type: ignore[attr-defined]


def test_resume_now_needs_a_reason_before_reading_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--state-dir", str(tmp_path), "resume", "no-such-run", "--yes", "--now", SATURDAY])
    err = capsys.readouterr().err
    assert code == 1 and "error[refused]: --now overrides the window guard" in err, err


def test_a_scheduled_run_cannot_carry_a_guard_override() -> None:
    """The timer's apply has no --now or --reason: it meets the guard at its real start time."""
    import argparse

    from upgrader.commands import schedule

    parser = argparse.ArgumentParser()
    schedule.add_arguments(parser)
    options = {o for a in parser._actions for o in a.option_strings}
    assert "--now" not in options and "--reason" not in options


@pytest.mark.parametrize(
    "extra, starts",
    [
        (["--now", SATURDAY], False),  # refused by apply: no early handshakes either
        (["--reason", "for nothing"], False),
        (["--now", SATURDAY, "--reason", "INC-9"], True),
        ([], True),
    ],
)
def test_early_connections_wait_for_a_complete_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: list[str], starts: bool
) -> None:
    """`apply --now` without its reason is refused before any host is contacted, early SSH included."""
    from upgrader.commands import early
    from upgrader.engine import endpoints, remote
    from upgrader.loading.inputs import load_inventory

    inventory = Path(__file__).resolve().parents[2] / "inventories" / "prod-na.yml"
    monkeypatch.setattr(remote, "start", lambda session, python: None)  # TEST-NET hosts: never connect
    loaded = load_inventory(inventory)
    early.remember(tmp_path, loaded.sha256, loaded.model, endpoints.endpoints(loaded.model, loaded.path))
    playbook = tmp_path / "pb.yml"
    playbook.write_text("component: riskgw\nversion: 9.9.9\n")
    started = early.start(["apply", str(playbook), "-i", str(inventory), "--yes", *extra], tmp_path)
    try:
        assert (started is not None and bool(started.pool.sessions())) == starts
    finally:
        if started is not None:
            started.pool.close()
