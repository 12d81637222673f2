"""A workflow task that overruns the SDK's deadlock detector (2 s without yielding) must not stall the run.

A control worker under load (a 2-core desk at load 100, measured in bench/temporal_scale.py) can take
longer than 2 s for one workflow activation: the SDK then interrupts it, fails the task and evicts the
workflow, and the server gives the task to a worker again, which replays the history.  The run must go on
from there.  Two shapes: one task slow once (the retry is fast), and every program started costing
time (a task that starts a whole window is as slow on every replay: limits.STARTS_PER_TASK bounds it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHandle

from tests.fakes.scenario import FROM, Scenario
from tests.temporal_server import DevServer
from tests.unit.test_driver_parity import Case
from tests.unit.test_temporal_tree import FLEET, WIDE, decide, fleet, programs_run, run_tree  # noqa: F401
from upgrader.engine import policy_messages as m
from upgrader.engine import policy_state
from upgrader.engine.gates import DecisionKind
from upgrader.journal import read
from upgrader.temporal import interpreter, limits
from upgrader.vocabulary import Event

Costs = Callable[[m.RollBackHost], None]


def aborted_run(
    s: Scenario, server: DevServer, monkeypatch: pytest.MonkeyPatch, cost: Costs, after: int
) -> tuple[int, set[str], float]:
    """``s``'s run on the Temporal driver, aborted once ``after`` hosts have ended, with ``cost`` called in the
    workflow's thread at every rollback a child steps (on its first run and on each replay); every host it
    changed must be back: its exit code, the hosts it changed, and how long it took."""
    real_step = policy_state.step

    def costly_step(program: Any, answer: Any) -> Any:
        action, result = real_step(program, answer)
        if isinstance(action, m.RollBackHost):
            cost(action)
        return action, result

    monkeypatch.setattr(interpreter, "step", costly_step)

    async def abort_after(handle: WorkflowHandle[Any, Any], journal: Path) -> None:
        for _ in range(3000):
            if journal.exists() and len([e for e in read(journal) if e.event == Event.HOST_END]) >= after:
                break
            await asyncio.sleep(0.02)
        await handle.signal("decide", decide(DecisionKind.ABORT))

    began = time.monotonic()
    code, states, found, _ = run_tree(s, server, steer=abort_after)
    took = time.monotonic() - began
    changed = set(programs_run(found))
    assert code == 3 and found[-1]["event"] == "run-end"
    assert {states[h] for h in changed} == {"rolled-back"}, states
    assert set(s.versions().values()) == {FROM}
    return code, changed, took


@pytest.mark.reliability(
    "the first workflow task of an abort's rollback child takes 2.5 s (over the SDK's 2 s deadlock limit), "
    "20 fake hosts",
    "the task is failed and retried from the history: every changed host rolled back, run-end recorded, exit 3",
)
def test_a_workflow_task_over_the_deadlock_limit_does_not_stall_the_run(
    fleet: Callable[[Case], Scenario],  # noqa: F811
    temporal_server: DevServer,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, str], None],
) -> None:
    s = fleet(Case("slow-task", FLEET, rollout=WIDE))
    slept: list[float] = []

    def once(_: m.RollBackHost) -> None:
        if not slept:
            slept.append(time.monotonic())
            time.sleep(2.5)  # once, in the workflow's thread: the SDK's deadlock detector fires

    code, changed, took = aborted_run(s, temporal_server, monkeypatch, once, after=1)
    assert slept, "no rollback ran: the test did not provoke the slow task"
    record_property(
        "observed",
        f"one 2.5 s workflow task in the rollback child; exit {code}; {len(changed)} changed host(s) all "
        f"rolled back, versions {set(s.versions().values())}; run took {took:.1f}s",
    )


PER_START = 0.3  # seconds a program's start costs in the test below: 7 in one workflow task pass 2 s


@pytest.mark.reliability(
    "every rollback started costs its workflow task 0.3 s (a loaded control worker), and an abort after "
    "10 of 20 fake hosts makes a rollback child start its whole window at once",
    "the child starts at most limits.STARTS_PER_TASK programs a workflow task, no task passes the 2 s "
    "deadlock limit (replayed at the same cost, one that did would stall the run for good); every changed "
    "host rolled back, exit 3",
)
def test_a_child_paces_its_starts_so_no_workflow_task_passes_the_deadlock_limit(
    fleet: Callable[[Case], Scenario],  # noqa: F811
    temporal_server: DevServer,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, str], None],
) -> None:
    s = fleet(Case("slow-starts", FLEET, rollout=WIDE))
    started: list[str] = []

    def each(action: m.RollBackHost) -> None:
        started.append(action.host)
        time.sleep(PER_START)

    monkeypatch.setattr(limits, "STARTS_PER_TASK", 3)  # 0.9 s a task at most
    code, changed, took = aborted_run(s, temporal_server, monkeypatch, each, after=10)
    assert len(changed) >= 7, changed  # enough for one unpaced task to pass the limit
    record_property(
        "observed",
        f"{len(changed)} changed host(s), {len(started)} rollback start(s) stepped (replays included); exit {code}; "
        f"all rolled back, versions {set(s.versions().values())}; run took {took:.1f}s",
    )
