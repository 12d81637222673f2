"""Runs through the real Temporal workflow and workers, in this process, with the agent stood in.

Shared by the workflow tests (tests/unit/test_temporal_workflow.py and its neighbours) and the history
capture (tests/histories/capture.py): the workers are the real ones (upgrader/temporal/worker.py), the
datacenter activities run the local engine's host code, whose agent calls go to the recording stand-in of
test_plan_ops (no SSH).  ``histories`` walks a finished run's executions (the parent, its children, and
every continue-as-new link of each) so a run can be saved and replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from tests.temporal_server import DevServer
from tests.unit.test_plan_ops import CASES, Agent, FakeTransport, case_plan
from upgrader.engine import remote
from upgrader.engine.gates import DecisionKind
from upgrader.engine.host_actions import HostActions
from upgrader.journal import read
from upgrader.loading.inputs import Loaded, load_inventory
from upgrader.models.inventory import Inventory
from upgrader.models.plan import Plan
from upgrader.planning import signing
from upgrader.temporal import plan_store, worker
from upgrader.temporal.messages import Start
from upgrader.temporal.settings import CONTROL_QUEUE

KEY = b"test-plan-key-0123456789abcdef"  # the controllers' and the datacenter workers' plan key


class Transport(FakeTransport):
    """The recording stand-in behind the real Pool: a Session reads its endpoint's name."""

    def __init__(self, endpoint: Any) -> None:
        super().__init__(endpoint.name)
        self.endpoint = endpoint

    def close(self) -> None:
        pass


Steer = Callable[[WorkflowHandle[Any, Any], Path], Awaitable[None]]


def decision(kind: DecisionKind, gate: str | None = None, reason: str = "test") -> dict[str, Any]:
    return {"kind": str(kind), "gate": gate, "operator": "pytest@ctl", "reason": reason, "at": "2026-12-01T00:00:00Z"}


async def journal_has(path: Path, predicate: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    for _ in range(600):
        if path.exists():
            entries = [dict(e.fields) for e in read(path)]  # the records as written
            if predicate(entries):
                return entries
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never reached the expected point")


def quick(plan: Plan) -> Plan:
    """The case's plan with second-long bakes and pauses (timers all the same), sealed again."""
    spec = plan.spec.model_copy(
        update={"canary": plan.spec.canary.model_copy(update={"bake": 1.0, "bake_interval": 0.5})}
    )
    phases = [
        p.model_copy(update={"bake": 1.0 if p.bake else 0.0, "pause_before": min(p.pause_before, 0.5)})
        for p in plan.phases
    ]
    return plan.model_copy(update={"spec": spec, "phases": phases, "content_hash": ""}).sealed()


def stored_text(start: Start) -> str:
    """The plan ``start`` names, as stored in its artifact store."""
    return plan_store.read(Path(start.artifacts), start.plan)


def signed(start: Start) -> Start:
    """``start`` as `apply --engine temporal` starts it: signed with the plan key."""
    start.signature = signing.sign_run(stored_text(start), start.run_id, start.python, start.break_lock, KEY)
    return start


@dataclass(frozen=True)
class Execution:
    """One execution of a run (a workflow id and run id) and its history as Temporal's JSON."""

    workflow_id: str
    run_id: str
    workflow_type: str
    history: dict[str, Any]


Keep = Callable[[list[Execution]], None]


async def histories(client: Client, workflow_id: str, run_id: str) -> list[Execution]:
    """Every execution of a run, parent first: its children (found in its history, so no visibility query
    is needed) and each continue-as-new link of each, in the order they started."""
    out: list[Execution] = []
    todo = [(workflow_id, run_id)]
    while todo:
        wid, rid = todo.pop(0)
        history = await client.get_workflow_handle(wid, run_id=rid).fetch_history()
        data = json.loads(history.to_json())
        started = history.events[0].workflow_execution_started_event_attributes
        out.append(Execution(wid, rid, started.workflow_type.name, data))
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
                child = event.child_workflow_execution_started_event_attributes.workflow_execution
                todo.append((child.workflow_id, child.run_id))
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                todo.append((wid, event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id))
    return out


@contextlib.asynccontextmanager
async def fleet_workers(
    client: Client,
    inventory: Loaded[Inventory],
    state: Path,
    factory: Callable[[Any], Any],
    *,
    artifacts: Path | None = None,
    control_artifacts: Path | None = None,
    desk: Loaded[Inventory] | None = None,
    plan_key: bytes = KEY,
) -> AsyncIterator[None]:
    """The real workers, in this process, for the block: one datacenter worker per datacenter of
    ``inventory`` (its transports from ``factory``, its store ``artifacts``) and a control worker writing
    journals into ``state`` (its inventory ``desk``, else the same; its store ``control_artifacts``; an
    exception in workflow code fails the run instead of retrying its task)."""
    running = worker.workers(
        client,
        inventory,
        datacenters=list(inventory.model.datacenters),
        control=False,
        state_dir=state,
        artifacts=artifacts,
        factory=factory,
        quiet=True,
        plan_key=plan_key,
    )
    running += worker.workers(
        client,
        desk or inventory,
        datacenters=[],
        control=True,
        state_dir=state,
        artifacts=control_artifacts,
        fail_on_bug=True,
    )
    async with contextlib.AsyncExitStack() as stack:
        for w in running:
            await stack.enter_async_context(w)
        yield


def run_workflow(
    server: DevServer,
    case: str,
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    fail: set[tuple[str, str]] | None = None,
    steer: Steer | None = None,
    control_inventory: Path | None = None,
    forge: Callable[[Start], Start] = signed,
    keep: Keep | None = None,
    make_agent: Callable[[Plan, set[tuple[str, str]] | None], Agent] = Agent,
    worker_store: Path | None = None,
    failed: list[WorkflowFailureError] | None = None,
) -> tuple[Agent, dict[str, Any], list[dict[str, Any]], Plan]:
    """A planner case's run, start to end, through the real workers on ``server``; ``keep`` is given the
    run's executions and histories once it has ended (tests/histories/capture.py saves them).  Its plan is
    stored in ``tmp``/artifacts (the controller's, the control worker's and, unless ``worker_store`` is given,
    the datacenter workers' store).  ``failed``: the workflow may fail (its error is put there, the outcome
    is empty)."""
    plan = quick(case_plan(case))
    agent = make_agent(plan, fail)
    monkeypatch.setattr(remote.Session, "call", lambda session, **kw: agent(session, **kw))
    monkeypatch.setattr(HostActions, "check_artifacts", lambda self: None)  # golden playbooks name no real files
    inventory = load_inventory(CASES / case / "inventory.yml")
    run_id = f"20261201T000000Z-{plan.component}-{secrets.token_hex(2)}"
    state = tmp / "state"
    store = tmp / "artifacts"
    store.mkdir(exist_ok=True)
    ref = plan_store.store(store, plan_store.text_of(plan))

    async def go() -> dict[str, Any]:
        client = await Client.connect(server.address)
        desk = load_inventory(control_inventory) if control_inventory else None
        async with fleet_workers(client, inventory, state, Transport, artifacts=worker_store, desk=desk):
            start = forge(
                Start(
                    run_id=run_id,
                    plan=ref,
                    operator="pytest@ctl",
                    artifacts=str(store),
                    run_start={
                        "seq": 1,
                        "at": "2026-12-01T00:00:00.000+00:00",
                        "event": "run-start",
                        "kind": "apply",
                        "run": run_id,
                        "component": plan.component,
                        "engine": "temporal",
                    },
                )
            )
            handle = await client.start_workflow(
                "upgrade",
                start,
                id=f"test-{run_id}",
                task_queue=CONTROL_QUEUE,
                execution_timeout=timedelta(seconds=120),
            )
            if steer is not None:
                await steer(handle, state / "runs" / run_id / "journal.jsonl")
            try:
                result: dict[str, Any] = await handle.result()
            except WorkflowFailureError as exc:
                if failed is None:
                    raise
                failed.append(exc)
                return {}
            if keep is not None:
                keep(await histories(client, handle.id, handle.result_run_id or ""))
            return result

    outcome = asyncio.run(go())
    journal = state / "runs" / run_id / "journal.jsonl"
    entries = [dict(e.fields) for e in read(journal)] if journal.exists() else []
    return agent, outcome, entries, plan
