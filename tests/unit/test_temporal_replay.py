"""Replay tests: the saved histories of representative runs, replayed against the current workflow code.

A run in flight (a weekend's upgrade waiting at a gate) is carried on by whichever control worker polls
next; after a rolling upgrade that is one with the new code, which replays the run's history to rebuild its
state.  If the new code would not make the same commands (an activity, timer or child added, removed or
reordered before the point the run had reached), the run stops with a non-determinism error.  These tests
make CI catch that first: every execution saved under tests/histories/ (each workflow class of
upgrader.temporal.worker.WORKFLOWS, a parent and its children, each continue-as-new link) must replay
against the classes the worker registers, with the worker's own sandbox.

Re-capture the histories (after a change released with no run in flight, or a new workflow class), one
command, on a dev server of its own (about a minute):

    PYTHONPATH=$PWD .venv/bin/python -m tests.histories.capture

The rule for changing workflow code without re-capturing is ``workflow.patched`` (README: Engines,
upgrading the workers); the last two tests show the replay failing without it and passing with it.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer, Worker
from temporalio.workflow import NondeterminismError

from tests.histories import altered, tree_probe
from tests.histories.capture import SCENARIOS, load, saved
from tests.temporal_harness import Execution, histories
from tests.temporal_server import DevServer
from upgrader.temporal.worker import WORKFLOWS, sandbox

HISTORIES = saved()


def replay(history: Execution, workflows: Sequence[type] = WORKFLOWS) -> None:
    """Replay one execution as the control worker would run it; raises on any divergence."""
    replayer = Replayer(workflows=list(workflows), workflow_runner=sandbox())
    asyncio.run(replayer.replay_workflow(WorkflowHistory.from_json(history.workflow_id, history.history)))


def executions(path: Path) -> list[Execution]:
    found = load(path)
    assert found, f"{path}: no executions saved"
    return found


def test_every_scenario_and_every_workflow_has_a_saved_history() -> None:
    """A scenario or a workflow class without a history is not protected: re-capture (module docstring)."""
    assert [p.stem for p in HISTORIES] == sorted(SCENARIOS)
    kinds = {e.workflow_type for p in HISTORIES for e in executions(p)}
    registered = {w.__temporal_workflow_definition.name for w in WORKFLOWS}  # type: ignore[attr-defined]
    assert registered <= kinds, f"no saved history runs {sorted(registered - kinds)}: re-capture"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_a_saved_history_replays_against_the_current_workflows(path: Path) -> None:
    for execution in executions(path):
        replay(execution)


@pytest.mark.reliability(
    "the workflow code changes under runs in flight: a step added before the run's first record, "
    "without workflow.patched, replayed against every saved history",
    "the replay fails with a non-determinism error (CI fails before a worker runs the change)",
)
def test_a_change_that_breaks_runs_in_flight_fails_the_replay(record_property: Callable[[str, object], None]) -> None:
    seen = []
    for path in HISTORIES:
        parent = executions(path)[0]
        with pytest.raises(NondeterminismError) as caught:
            replay(parent, [altered.Unversioned])
        said = re.search(r"\[TMPRL\d+\][^\"]*", str(caught.value))
        seen.append(f"{path.stem}: {said.group(0) if said else str(caught.value)[:120]}")
    record_property("observed", f"{len(seen)} histories refused; e.g. {seen[0]}")


@pytest.mark.reliability(
    "the same added step under `if workflow.patched(...)`, replayed against every saved history",
    "every saved run replays: the runs in flight keep their old path",
)
def test_the_same_change_under_workflow_patched_replays(record_property: Callable[[str, object], None]) -> None:
    for path in HISTORIES:
        replay(executions(path)[0], [altered.Patched])
    record_property("observed", f"{len(HISTORIES)} histories replayed against the patched copy")


def test_the_capture_saves_every_execution_of_a_tree_and_they_replay(temporal_server: DevServer) -> None:
    """A parent whose child continues as new twice: four executions, parent first, each replayable."""

    async def run() -> list[Execution]:
        client = await Client.connect(temporal_server.address)
        workflows = [tree_probe.ProbeParent, tree_probe.ProbeChild]
        async with Worker(client, task_queue="probe-tree", workflows=workflows, workflow_runner=sandbox()):
            handle = await client.start_workflow(
                tree_probe.ProbeParent.run, 2, id=f"probe-{secrets.token_hex(3)}", task_queue="probe-tree"
            )
            assert await handle.result() == 7
            return await histories(client, handle.id, handle.result_run_id or "")

    found = asyncio.run(run())
    assert [e.workflow_type for e in found] == ["probe-parent"] + ["probe-child"] * 3
    assert len({e.run_id for e in found}) == 4 and found[1].workflow_id == f"{found[0].workflow_id}/hosts-1"
    for execution in found:
        replay(execution, [tree_probe.ProbeParent, tree_probe.ProbeChild])
