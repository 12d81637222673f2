"""Manual gates: decisions written by `promote`/`abort`, read by the waiting run; hostile files in the directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from upgrader.cli.main import main
from upgrader.engine import gates
from upgrader.engine.gates import DecisionKind, GateOutcome
from upgrader.journal import Journal
from upgrader.vocabulary import Event


@pytest.fixture
def run(tmp_path: Path) -> Journal:
    journal = Journal.create(tmp_path / "state", "20261205T070000Z-ordergw-1a2b")
    journal.record(Event.RUN_START, kind="apply", component="ordergw")
    return journal


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_promote_for_this_gate_ends_the_wait(run: Journal) -> None:
    gates.request(run.directory, DecisionKind.PROMOTE, gate="canary-ny5", operator="ann@ctl", reason="fills ok")
    result = gates.wait(run.directory, "canary-ny5", timeout=60, healthy=lambda: None)
    assert result.outcome is GateOutcome.PROMOTED and result.decision and result.decision.operator == "ann@ctl"


def test_a_promote_for_another_gate_does_not_count_but_an_abort_always_does(run: Journal) -> None:
    clock = Clock()
    gates.request(run.directory, DecisionKind.PROMOTE, gate="canary-ny5", operator="ann", reason="")
    result = gates.wait(run.directory, "dc-ch2", timeout=5, healthy=lambda: None, clock=clock, sleep=clock.sleep)
    assert result.outcome is GateOutcome.TIMED_OUT and result.waited >= 5
    gates.request(run.directory, DecisionKind.ABORT, gate="ignored", operator="bob", reason="INC-1")
    result = gates.wait(run.directory, "dc-ch2", timeout=5, healthy=lambda: None)
    assert result.outcome is GateOutcome.ABORTED and result.decision and result.decision.gate is None


def test_a_canary_that_degrades_while_waiting_ends_the_wait(run: Journal) -> None:
    clock = Clock()
    rounds = iter([None, None, "health: HTTP 500"])
    result = gates.wait(
        run.directory, "canary-ny5", timeout=3600, healthy=lambda: next(rounds), clock=clock, sleep=clock.sleep
    )
    assert (result.outcome, result.detail) == (GateOutcome.DEGRADED, "health: HTTP 500")
    assert result.waited < 3600


def test_planted_files_are_not_decisions(run: Journal, tmp_path: Path) -> None:
    directory = run.directory / gates.DECISIONS
    directory.mkdir()
    secret = tmp_path / "elsewhere.json"
    secret.write_text(json.dumps({"kind": "promote", "gate": "g", "operator": "x", "reason": "", "at": "t"}))
    os.symlink(secret, directory / "0-promote-link.json")  # a symlink out: not followed
    (directory / "1-big.json").write_text(
        json.dumps({"kind": "promote", "gate": "g", "operator": "x" * 10000, "reason": "", "at": "t"})
    )
    (directory / "2-bad.json").write_bytes(b"\xff\xfe not json")
    (directory / "3-list.json").write_text("[1, 2]")
    (directory / "4-kind.json").write_text(
        json.dumps({"kind": "yolo", "gate": "g", "operator": "x", "reason": "", "at": "t"})
    )
    (directory / "5-types.json").write_text(
        json.dumps({"kind": "abort", "gate": None, "operator": 1, "reason": "", "at": "t"})
    )
    assert gates.decisions(run.directory) == []
    assert gates.pending(run.directory, "g") is None


def cli(state: Path, *argv: str) -> int:
    return main(["--state-dir", str(state), *argv])


def test_promote_and_abort_commands(run: Journal, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    assert cli(state, "promote", run.run_id) == 1  # not waiting at any gate
    assert "not waiting at a gate" in capsys.readouterr().err
    run.record(Event.GATE_WAIT, gate="canary-ny5")
    assert cli(state, "promote", run.run_id, "--reason", "ok", "--wait", "0") == 0
    assert gates.pending(run.directory, "canary-ny5") is not None
    run.record(Event.GATE_END, gate="canary-ny5", outcome="promoted")
    with pytest.raises(SystemExit) as usage:
        cli(state, "abort", run.run_id)  # --reason is required
    assert usage.value.code == 2
    assert cli(state, "abort", run.run_id, "--reason", "INC-9", "--wait", "0") == 0
    audit = [json.loads(line) for line in (state / "audit.log").read_text().splitlines()]
    assert [(a["action"], a["gate"]) for a in audit] == [("promote", "canary-ny5"), ("abort", None)]
    run.record(Event.RUN_END, status="aborted")
    assert cli(state, "abort", run.run_id, "--reason", "again") == 1
    assert cli(state, "promote", "no-such-run") == 1


def test_the_engine_stops_at_an_aborted_gate_and_rolls_back(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The planner's manual_gates case through the real engine (fake agent): abort at the first gate."""
    from tests.unit.test_plan_ops import case_plan, run_engine

    plan = case_plan("manual_gates")
    wait = gates.wait

    def abort_while_waiting(run_dir: Path, gate: str, **kwargs: object) -> gates.GateResult:
        gates.request(run_dir, DecisionKind.ABORT, gate=None, operator="ann@ctl", reason="INC-9")
        return wait(run_dir, gate, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gates, "wait", abort_while_waiting)
    agent, entries = run_engine(plan, in_tmp, monkeypatch, decide=None)
    canary = plan.phases[0].hosts
    started = {e["host"] for e in entries if e["event"] == "host-begin"}
    assert started == set(canary)  # the canary ran; nothing after the gate started
    end = next(e for e in entries if e["event"] == "gate-end")
    assert (end["gate"], end["outcome"]) == ("promote-ch", "aborted")
    assert [e["status"] for e in entries if e["event"] == "run-end"] == ["aborted"]
    assert any(o["op"] == "rollback" for o in agent.program(canary[0]))  # the canary the gate judged


def test_an_abort_before_anything_starts_starts_nothing(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.test_plan_ops import case_plan, run_engine

    _, entries = run_engine(case_plan("manual_gates"), in_tmp, monkeypatch, decide=DecisionKind.ABORT)
    assert not any(e["event"] == "host-begin" for e in entries)
    assert [e["status"] for e in entries if e["event"] == "run-end"] == ["aborted"]


def test_the_engine_passes_promoted_gates(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.test_plan_ops import case_plan, run_engine

    plan = case_plan("manual_gates")
    _, entries = run_engine(plan, in_tmp, monkeypatch)
    ends = [(e["gate"], e["outcome"]) for e in entries if e["event"] == "gate-end"]
    assert ends == [(p.gate.id, "promoted") for p in plan.phases if p.gate is not None]
    assert [e["status"] for e in entries if e["event"] == "run-end"] == ["succeeded"]


@pytest.mark.parametrize("run_id", ["../../etc", "/etc", "runs/../x", "a\x00b"])
def test_a_decision_can_only_name_a_run_in_the_state_directory(
    tmp_path: Path, run_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    assert cli(state, "promote", run_id) == 1
    assert cli(state, "abort", run_id, "--reason", "x") == 1
    assert "is not a run id" in capsys.readouterr().err
    assert not any(tmp_path.rglob(gates.DECISIONS))
