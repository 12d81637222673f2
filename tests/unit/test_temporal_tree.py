"""The Temporal run as a tree (workflow.py → hosts_workflow.py): children, continue-as-new, the record check.

On a second dev server whose histories suggest continue-as-new after a few dozen events
(tests/temporal_server.SMALL_HISTORY), so a fleet of a dozen fake hosts (tests/fakes: the real agent on
a directory tree) makes each `hosts` child continue-as-new several times; the local driver's run of the
same scenario is the reference (tests/unit/test_driver_parity.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import RetryPolicy
from temporalio.service import RPCError
from temporalio.worker import Worker

from tests.fakes.scenario import FROM, TO, Scenario
from tests.temporal_server import DevServer
from tests.unit.test_driver_parity import (
    GATED,
    KEY,
    Case,
    _journal_has,
    build,
    by_host_and_phase,
    run_level,
    run_local,
)
from upgrader.engine import gates
from upgrader.engine.gates import DecisionKind
from upgrader.journal import Journal, read
from upgrader.loading.inputs import load_inventory
from upgrader.planning import signing
from upgrader.temporal import worker
from upgrader.temporal.messages import Records, Start
from upgrader.temporal.settings import CONTROL_QUEUE
from upgrader.vocabulary import Event

FLEET = {"ny": [f"ny-{i}" for i in range(1, 12)], "ch": [f"ch-{i}" for i in range(1, 10)]}
WIDE = {"batch": 20}  # one wave per datacenter after its canary: a child runs 8-10 hosts
Steer = Callable[[WorkflowHandle[Any, Any], Path], Awaitable[None]]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Callable[[Case], Scenario]]:
    made: list[Scenario] = []

    def make(case: Case) -> Scenario:
        made.append(build(case, tmp_path / f"{case.name}-{len(made)}"))
        return made[-1]

    yield make
    for s in made:
        s.close()


def run_tree(
    s: Scenario, server: DevServer, steer: Steer | None = None
) -> tuple[int, dict[str, str], list[dict[str, Any]], dict[str, Any]]:
    """The scenario's run on the Temporal driver: exit code, end states, journal, and its last `progress`."""
    inventory = load_inventory(s.inventory)
    run_id = f"20261205T000000Z-app-{secrets.token_hex(2)}"
    state = s.tmp / "state-temporal"
    journal = state / "runs" / run_id / "journal.jsonl"
    factory = s.hosts.pool()._factory

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        client = await Client.connect(server.address)
        running = worker.workers(
            client,
            inventory,
            datacenters=list(inventory.model.datacenters),
            control=False,
            state_dir=state,
            factory=factory,
            quiet=True,
            plan_key=KEY,
        )
        running += worker.workers(client, inventory, datacenters=[], control=True, state_dir=state, fail_on_bug=True)
        async with contextlib.AsyncExitStack() as stack:
            for w in running:
                await stack.enter_async_context(w)
            start = Start(
                run_id=run_id,
                plan=s.plan.to_json(),
                operator="pytest@ctl",
                artifacts=str(s.artifacts),
                run_start={"seq": 1, "at": "2026-12-05T00:00:00.000+00:00", "event": "run-start", "run": run_id},
            )
            start.signature = signing.sign_run(start.plan, run_id, start.python, start.break_lock, KEY)
            handle = await client.start_workflow(
                "upgrade",
                start,
                id=f"tree-{run_id}",
                task_queue=CONTROL_QUEUE,
                execution_timeout=timedelta(seconds=300),
            )
            if steer is not None:
                await steer(handle, journal)
            result: dict[str, Any] = await handle.result()
            return result, await handle.query("progress")

    outcome, progress = asyncio.run(go())
    states = {row[0]: row[2] for row in outcome["rows"]}
    return int(outcome["exit_code"]), states, [dict(r.fields) for r in read(journal)], progress


def decide(kind: DecisionKind, gate: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"kind": str(kind), "gate": gate, "operator": "pytest@ctl", "reason": "tree", "at": gates.now(), **extra}


def programs_run(found: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in found:
        if e["event"] == Event.HOST_BEGIN:
            out[e["host"]] = out.get(e["host"], 0) + 1
    return out


def test_children_that_continue_as_new_make_the_local_run(
    fleet: Callable[[Case], Scenario],
    temporal_small_history: DevServer,
    record_property: Callable[[str, str], None],
) -> None:
    """20 hosts in two datacenters, one of them failing: each `hosts` child continues-as-new several times,
    and the run is the local driver's, every host's program run once, the journal's seqs one after another."""
    case = Case("tree", FLEET, frozenset({"ch-5"}), "host", rollout={**WIDE, "max_failures": 3})
    code, states, found = run_local(case, fleet(case))
    twin = fleet(case)
    t_code, t_states, t_found, progress = run_tree(twin, temporal_small_history)
    assert progress["tree"]["continued"] >= 3, progress["tree"]
    assert by_host_and_phase(t_found) == by_host_and_phase(found)
    assert run_level(t_found) == run_level(found)
    assert (t_code, t_states) == (code, states)
    assert programs_run(t_found) == {h: 1 for hs in FLEET.values() for h in hs}
    assert [e["seq"] for e in t_found] == list(range(1, len(t_found) + 1))
    record_property(
        "observed",
        f"exit {t_code} on both; {progress['tree']['children']} children, "
        f"{progress['tree']['continued']} continues-as-new; programs run {sorted(set(programs_run(t_found).values()))}",
    )


@pytest.mark.reliability(
    "an abort signal sent while the run's `hosts` child continues-as-new (20 fake hosts, a dev server "
    "suggesting continue-as-new every ~60 events)",
    "the abort is carried across: nothing more starts, every host the run changed is put back, run-end recorded",
)
def test_an_abort_during_continue_as_new_rolls_every_changed_host_back(
    fleet: Callable[[Case], Scenario],
    temporal_small_history: DevServer,
    record_property: Callable[[str, str], None],
) -> None:
    case = Case("tree-abort", FLEET, rollout=WIDE)
    s = fleet(case)
    seen: dict[str, Any] = {}

    async def abort_at_a_continue(handle: WorkflowHandle[Any, Any], journal: Path) -> None:
        client = handle._client
        first: dict[str, str | None] = {}  # child → its first run id
        for _ in range(3000):  # a child's run id changes: it has just continued-as-new
            child = (await handle.query("progress"))["tree"]["child"]
            if child is not None:
                try:
                    run = (await client.get_workflow_handle(child).describe()).run_id
                except RPCError:  # not started yet
                    continue
                if first.setdefault(child, run) != run:
                    break
            await asyncio.sleep(0.02)
        seen["at"] = len([e for e in read(journal) if e.event == Event.HOST_END])
        await handle.signal("decide", decide(DecisionKind.ABORT))

    code, states, found, progress = run_tree(s, temporal_small_history, steer=abort_at_a_continue)
    changed = {h for h in programs_run(found)}
    assert code == 3 and [e["event"] for e in found].count("abort") == 1
    assert 0 < len(changed) < sum(len(v) for v in FLEET.values()), changed  # it stopped the run midway
    assert {states[h] for h in changed} == {"rolled-back"}, states
    assert set(s.versions().values()) == {FROM}
    assert found[-1]["event"] == "run-end" and progress["tree"]["continued"] >= 1
    record_property(
        "observed",
        f"abort after {seen['at']} host-end(s), at a child's continue-as-new; {len(changed)} host(s) changed, all "
        f"rolled back; versions on the hosts {set(s.versions().values())}; exit {code}; "
        f"{progress['tree']['continued']} continues-as-new",
    )


def test_a_promote_ahead_counts_at_its_gate_after_continues_as_new(
    fleet: Callable[[Case], Scenario], temporal_small_history: DevServer
) -> None:
    case = Case("tree-gates", FLEET, playbook=GATED, rollout=WIDE)
    s = fleet(case)
    gate_ids = [p.gate.id for p in s.plan.phases if p.gate is not None]
    assert len(gate_ids) == 2

    async def steer(handle: WorkflowHandle[Any, Any], journal: Path) -> None:
        await _journal_has(journal, lambda es: any(e.get("gate") == gate_ids[0] for e in es))
        await handle.signal("decide", decide(DecisionKind.PROMOTE, gate_ids[1], ahead=True))
        await handle.signal("decide", decide(DecisionKind.PROMOTE, gate_ids[0]))

    code, _, found, progress = run_tree(s, temporal_small_history, steer=steer)
    assert code == 0 and progress["tree"]["continued"] >= 1
    ends = {e["gate"]: e["decision"] for e in found if e["event"] == "gate-end"}
    assert ends[gate_ids[1]]["ahead"] is True
    assert set(s.versions().values()) == {TO}


# ---------------------------------------------------------------- the record check


@workflow.defn(name="rogue")
class Rogue:
    """A workflow of anyone's in the namespace: it asks the control worker to append to a run's journal."""

    @workflow.run
    async def run(self, batch: Records) -> str:
        try:
            await workflow.execute_activity(
                "record",
                batch,
                task_queue=CONTROL_QUEUE,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except Exception as exc:  # what the control worker answered is the result
            return f"refused: {getattr(exc, 'cause', None) or exc}"
        return "written"


@workflow.defn(name="rogue-parent")
class RogueParent:
    """A rogue's parent: its child is a child, but not of the run's execution."""

    @workflow.run
    async def run(self, batch: Records) -> str:
        return str(await workflow.execute_child_workflow(Rogue.run, batch, id=workflow.info().workflow_id + "/c"))


@pytest.mark.reliability(
    "a workflow that is not the run's own `hosts` child (a stranger's, a stranger's child, a `hosts` workflow "
    "started by hand) schedules the control worker's 'record' activity for an existing run",
    "refused: the server says whose child the caller is; nothing is written to the run's journal",
)
@pytest.mark.parametrize("who", ["rogue", "rogue-parent", "hosts-by-hand"])
def test_only_the_runs_own_children_write_its_records(
    who: str, temporal_server: DevServer, tmp_path: Path, record_property: Callable[[str, str], None]
) -> None:
    s = Scenario.build(tmp_path, {"ny": ["ny-1"]})
    state = tmp_path / "state"
    run_id = f"20261205T000000Z-app-{secrets.token_hex(2)}"
    journal = Journal.create(state, run_id)
    journal.record(Event.RUN_START, kind="apply", execution="the-real-execution")
    before = journal.path.read_bytes()
    forged = Records(run_id, [{"seq": 2, "at": "2026-12-05T00:00:01.000+00:00", "event": "run-end", "status": "ok"}])

    async def go() -> str:
        client = await Client.connect(temporal_server.address)
        inventory = load_inventory(s.inventory)
        control = worker.workers(client, inventory, datacenters=[], control=True, state_dir=state)
        queue = f"rogue-{secrets.token_hex(3)}"
        rogue = Worker(client, task_queue=queue, workflows=[Rogue, RogueParent])
        async with contextlib.AsyncExitStack() as stack:
            for w in [*control, rogue]:
                await stack.enter_async_context(w)
            if who == "hosts-by-hand":  # the real child workflow, started by hand with the run's id and a seq
                from upgrader.temporal.messages import Hosts

                start = Start(run_id, s.plan.to_json(), "x@y", str(s.artifacts))
                snap = {"failures": 0, "failures_in": {}, "in_flight": {}, "halted": None, "resumable": False}
                snap |= {"signalled": None, "stop_now": False, "held": False, "abort": None, "abort_handled": False}
                snap |= {"recovered": [], "phase": 0, "groups": {}, "hosts": {}}
                work = Hosts(start, "phase", ["ny-1"], 1, 1, snap)
                handle = await client.start_workflow(
                    "hosts", work, id=f"x-{queue}", task_queue=CONTROL_QUEUE, execution_timeout=timedelta(seconds=60)
                )
                try:
                    await handle.result()
                except WorkflowFailureError as exc:
                    chain: list[str] = []
                    inner: BaseException | None = exc.cause
                    while inner is not None:
                        chain.append(str(inner))
                        inner = getattr(inner, "cause", None)
                    return "refused: " + " / ".join(chain)
                return "the hosts workflow ended"
            return str(
                await client.execute_workflow(
                    who, forged, id=f"{who}-{queue}", task_queue=queue, execution_timeout=timedelta(seconds=60)
                )
            )

    answer = asyncio.run(go())
    s.close()
    after = journal.path.read_bytes()
    record_property("observed", f"{who}: {answer[:160]}; journal unchanged: {after == before}")
    assert after == before
    assert answer.startswith("refused") and "not this workflow execution" in answer, answer
