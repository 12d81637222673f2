"""The Temporal engine's workflow logic, on the session's dev server, with in-process workers and the fake agent.

The workers are the real ones (upgrader/temporal/worker.py, run by tests/temporal_harness.py): the workflow,
the control activities writing the journal, and the datacenter activities running the local engine's host code, whose
agent calls go to the recording stand-in of test_plan_ops (no SSH).  Gates are decided by signals,
as `upgrader promote`/`abort` send them.  (temporalio's time-skipping environment downloads a test
server at run time, which CI may not do; the planner cases' bakes and gates are seconds long.)
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from tests.temporal_harness import (  # the machinery, shared with the history capture (tests/histories/)
    KEY,
    Steer,
    Transport,
    decision,
    journal_has,
    quick,
    run_workflow,
    signed,
    stored_text,
)
from tests.temporal_server import DevServer
from tests.unit.test_plan_ops import CASES, Agent, case_plan
from upgrader.engine.gates import DecisionKind
from upgrader.loading.inputs import load_inventory
from upgrader.models.plan import Plan
from upgrader.planning import signing
from upgrader.temporal import plan_store, worker
from upgrader.temporal.messages import PlanRef, Start

__all__ = ["KEY", "Steer", "Transport", "decision", "journal_has", "quick", "run_workflow", "signed", "stored_text"]


def live_steps(agent: Agent, host: str) -> list[dict[str, Any]]:
    """What the host was sent, less bookkeeping and the bake's check rounds (timers here, not one agent call)."""
    return [o for o in agent.program(host) if o["op"] != "bake"]


@pytest.mark.parametrize("case", ["two_dcs_order_pause", "multi_hop", "single_dc_canary_waves"])
def test_the_workflow_sends_exactly_the_plans_steps(
    case: str, temporal_server: DevServer, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, outcome, entries, plan = run_workflow(temporal_server, case, in_tmp, monkeypatch)
    assert (outcome["exit_code"], outcome["status"]) == (0, "succeeded"), outcome
    for host in plan.hosts:
        sent = [o for o in live_steps(agent, host.host)]
        for o in sent:
            o.pop("upload", None)
        assert sent == [{**s.op, "step": s.id} for s in host.steps if s.action != "bake"], host.host
    # the same journal as a local run: in order, each record once, ending with run-end
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert entries[-1]["event"] == "run-end" and entries[-1]["hosts"][plan.hosts[0].host]["version"]
    begins = [e["host"] for e in entries if e["event"] == "host-begin"]
    assert sorted(begins) == sorted(h.host for h in plan.hosts)
    # the run's plan.json, copied by the control worker from the store, is the file a local run writes
    assert (in_tmp / "state" / "runs" / entries[0]["run"] / "plan.json").read_text() == plan.to_json()
    assert entries[0]["hosts"] == [h.host for h in plan.hosts]  # added by the workflow, not carried by the start


def test_a_failed_host_is_rolled_back_per_the_policy(
    temporal_server: DevServer, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = case_plan("two_dcs_order_pause")
    canary = plan.phases[0].hosts[0]
    agent, outcome, entries, _ = run_workflow(
        temporal_server, "two_dcs_order_pause", in_tmp, monkeypatch, fail={(canary, "start")}
    )
    assert outcome["exit_code"] == 3 and outcome["status"] == "failed-rolled-back"
    assert any(o["op"] == "rollback" for o in agent.program(canary))
    started = {e["host"] for e in entries if e["event"] == "host-begin"}
    assert started == {canary}  # nothing after the failed canary started
    assert [e["event"] for e in entries].count("rollback-begin") == 1


def test_promote_signals_carry_the_run_past_each_gate(
    temporal_server: DevServer, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = case_plan("manual_gates")
    gates = [p.gate.id for p in plan.phases if p.gate is not None]

    async def promote_each(handle: WorkflowHandle[Any, Any], journal: Path) -> None:
        for gate in gates:
            await journal_has(journal, lambda es, g=gate: any(e["event"] == "gate-wait" and e["gate"] == g for e in es))  # type: ignore[misc]
            await handle.signal("decide", decision(DecisionKind.PROMOTE, gate))

    _, outcome, entries, _ = run_workflow(temporal_server, "manual_gates", in_tmp, monkeypatch, steer=promote_each)
    assert outcome["exit_code"] == 0, outcome
    ends = [(e["gate"], e["outcome"], e["decision"]["operator"]) for e in entries if e["event"] == "gate-end"]
    assert ends == [(g, "promoted", "pytest@ctl") for g in gates]


def test_an_abort_signal_at_a_gate_rolls_back_and_starts_nothing_more(
    temporal_server: DevServer, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = case_plan("manual_gates")
    canary = plan.phases[0].hosts

    async def abort(handle: WorkflowHandle[Any, Any], journal: Path) -> None:
        await journal_has(journal, lambda es: any(e["event"] == "gate-wait" for e in es))
        await handle.signal("decide", decision(DecisionKind.ABORT, reason="INC-9"))

    agent, outcome, entries, _ = run_workflow(temporal_server, "manual_gates", in_tmp, monkeypatch, steer=abort)
    assert (outcome["exit_code"], outcome["status"]) == (3, "aborted") and "INC-9" in outcome["message"]
    assert {e["host"] for e in entries if e["event"] == "host-begin"} == set(canary)
    assert any(o["op"] == "rollback" for o in agent.program(canary[0]))
    assert [e["reason"] for e in entries if e["event"] == "abort"] == ["INC-9"]


def test_hostile_signals_are_ignored(temporal_server: DevServer, in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal is outside input: anything that is not a well-formed decision changes nothing."""
    plan = case_plan("manual_gates")
    first = next(p.gate.id for p in plan.phases if p.gate is not None)

    async def junk_then_abort(handle: WorkflowHandle[Any, Any], journal: Path) -> None:
        await journal_has(journal, lambda es: any(e["event"] == "gate-wait" for e in es))
        for junk in (
            {"kind": "promote"},
            {"kind": "yolo", "gate": first, "operator": "x", "reason": "", "at": ""},
            {"kind": "promote", "gate": first, "operator": 7, "reason": "", "at": ""},
            [1, 2],
            "promote",
        ):
            await handle.signal("decide", junk)
        await handle.signal("decide", decision(DecisionKind.PROMOTE, "some-other-gate"))
        state = await handle.query("progress")
        assert state["waiting"] == first and state["abort"] is None
        await handle.signal("decide", decision(DecisionKind.ABORT, reason="done probing"))

    _, outcome, entries, _ = run_workflow(temporal_server, "manual_gates", in_tmp, monkeypatch, steer=junk_then_abort)
    assert outcome["status"] == "aborted"
    assert json.dumps(next(e for e in entries if e["event"] == "gate-end")["decision"]["reason"]) == '"done probing"'


def test_the_inventory_webhooks_hear_of_the_run(
    temporal_server: DevServer, in_tmp: Path, monkeypatch: pytest.MonkeyPatch, hook: list[dict[str, Any]]
) -> None:
    """The same notifications as a local run's, sent by the control worker (a hook on loopback)."""
    desk = in_tmp / "desk.yml"
    desk.write_text(
        (CASES / "two_dcs_order_pause" / "inventory.yml").read_text() + "notify:\n  - {url_env: UPG_TEST_HOOK}\n"
    )
    _, outcome, _, _ = run_workflow(temporal_server, "two_dcs_order_pause", in_tmp, monkeypatch, control_inventory=desk)
    assert outcome["exit_code"] == 0
    kinds = [e["event"] for e in hook]
    assert kinds[0] == "run-started" and kinds[-1] == "finished" and "canary-passed" in kinds, kinds


# ---------------------------------------------------------------- issue 25 §7: the worker's trust boundary


def _forged_text(start: Start) -> str:
    """The run's plan with a command of the forger's choosing as every host's first live step, sealed again
    (its content hash recomputed, as anyone can)."""
    data = json.loads(stored_text(start))
    for op in data["operations"]:  # each written once, run by every host whose program names it
        if op.get("op") == "precheck":
            op["commands"] = [
                {
                    "name": "owned",
                    "kind": "command",
                    "timeout": 5.0,
                    "retries": 0,
                    "interval": 1.0,
                    "command": {"argv": ["/bin/sh", "-c", "id > /tmp/owned"]},
                }
            ]
    return plan_store.text_of(Plan.from_data(data).model_copy(update={"content_hash": ""}).sealed())


def _forged_plan(start: Start) -> PlanRef:
    """The forged plan stored beside the genuine one (as if the forger could write the artifact store)."""
    return plan_store.store(Path(start.artifacts), _forged_text(start))


def _unsigned(start: Start) -> Start:
    start.plan = _forged_plan(start)
    return start


def _other_key(start: Start) -> Start:
    start.plan = _forged_plan(start)
    start.signature = signing.sign_run(
        stored_text(start), start.run_id, start.python, start.break_lock, b"the-forgers-own-key-0123456789"
    )
    return start


def _edited_after_signing(start: Start) -> Start:
    signed(start)  # a genuine signature of the reviewed plan ...
    start.plan = _forged_plan(start)  # ... on another plan
    return start


def _python_swapped(start: Start) -> Start:
    signed(start)  # the reviewed plan, signed for python3 ...
    start.python = "/tmp/evil-python"  # ... run under an interpreter of the forger's choosing
    return start


FORGERIES = {
    "unsigned forged plan": _unsigned,
    "forged plan signed with another key": _other_key,
    "signed plan edited afterwards": _edited_after_signing,
    "signed plan, python swapped": _python_swapped,
}


@pytest.mark.reliability(
    "a workflow started in the namespace with a forged plan (a root command on every host) "
    "or forged run parameters, on the dev server with the real workers",
    "the datacenter workers refuse it before any host is sent anything",
)
@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_forged_plan_is_refused_by_the_worker(
    forgery: str,
    temporal_server: DevServer,
    in_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, object], None],
) -> None:
    try:
        agent, outcome, _, plan = run_workflow(
            temporal_server, "two_dcs_order_pause", in_tmp, monkeypatch, forge=FORGERIES[forgery]
        )
        verdict = f"run ended {outcome.get('status')} (exit {outcome.get('exit_code')}): {outcome.get('message')}"
    except WorkflowFailureError as exc:
        raise AssertionError(f"the workflow failed instead of refusing: {exc.cause or exc}") from None
    sent = {h.host: agent.program(h.host) for h in plan.hosts}
    record_property(
        "observed", f"{forgery}: {verdict[:200]}; operations sent to hosts: {sum(len(v) for v in sent.values())}"
    )
    assert all(not ops for ops in sent.values()), sent
    assert outcome["exit_code"] != 0


# ---------------------------------------------------------------- issue 27 §1: the plan by reference


def _copy_into(store: Path, start: Start, data: bytes) -> Path:
    """``data`` as the datacenter workers' copy of the run's plan file (their own artifact store)."""
    (store / "plans").mkdir(mode=0o700, exist_ok=True)
    target = plan_store.path_of(store, start.plan)
    target.write_bytes(data)
    return target


@pytest.mark.reliability(
    "the datacenter workers' artifact store (worker --artifacts) lacks the run's plan, holds it with one byte "
    "changed, or holds another plan (a forged one, gzipped properly) under the run's plan's name",
    "each datacenter worker refuses it before any host is sent anything; the run ends refused (exit 1) in one "
    "line naming the path (and, when missing, how to put it there)",
)
@pytest.mark.parametrize("copy", ["missing", "byte flipped", "swapped for a forged plan"])
def test_a_datacenter_worker_runs_only_the_plan_file_the_controller_stored(
    copy: str,
    temporal_server: DevServer,
    in_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, object], None],
) -> None:
    theirs = in_tmp / "dc-artifacts"
    theirs.mkdir()

    def prepare(start: Start) -> Start:
        signed(start)
        good = plan_store.path_of(Path(start.artifacts), start.plan).read_bytes()
        if copy == "byte flipped":
            raw = bytearray(good)
            raw[len(raw) // 2] ^= 0x20
            _copy_into(theirs, start, bytes(raw))
        elif copy == "swapped for a forged plan":
            _copy_into(theirs, start, gzip.compress(_forged_text(start).encode(), mtime=0))
        return start

    agent, outcome, entries, plan = run_workflow(
        temporal_server, "two_dcs_order_pause", in_tmp, monkeypatch, forge=prepare, worker_store=theirs
    )
    sent = sum(len(agent.program(h.host)) for h in plan.hosts)
    message = str(outcome.get("message"))
    record_property(
        "observed",
        f"{copy}: run ended {outcome['status']} (exit {outcome['exit_code']}): {message[:240]}; "
        f"operations sent to hosts: {sent}",
    )
    assert (outcome["exit_code"], outcome["status"]) == (1, "refused") and sent == 0
    assert "\n" not in message and str(theirs / "plans") in message
    assert [e["event"] for e in entries] == ["run-start", "run-end"]  # nothing locked, nothing run
    if copy == "missing":
        assert "--artifacts" in message and "copy the controller's" in message


@pytest.mark.reliability(
    "the control worker's copy of the run's plan has one byte changed after the run was signed (the datacenter "
    "workers hold a good copy), or the control worker serves the workflow other bytes than its file's",
    "the workflow's load refuses the plan before anything is recorded, locked or run; the client reports a "
    "plan-store refusal (exit 1) naming the plan, not a failed run",
)
@pytest.mark.parametrize("lie", ["control store tampered", "control worker serves other bytes"])
def test_the_workflow_loads_only_the_plan_its_reference_names(
    lie: str,
    temporal_server: DevServer,
    in_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, object], None],
) -> None:
    from upgrader.engine.progress import Lines
    from upgrader.temporal import client as temporal
    from upgrader.temporal.control import Control

    theirs = in_tmp / "dc-artifacts"
    theirs.mkdir()

    def flipped(data: bytes) -> bytes:
        raw = bytearray(data)
        raw[len(raw) // 2] ^= 0x20
        return bytes(raw)

    def prepare(start: Start) -> Start:
        signed(start)
        path = plan_store.path_of(Path(start.artifacts), start.plan)
        _copy_into(theirs, start, path.read_bytes())  # the datacenter workers' copy is the good one
        if lie == "control store tampered":
            path.write_bytes(flipped(path.read_bytes()))
        else:
            good = path.read_bytes()

            async def lying(self: Control, ref: PlanRef, artifacts: str) -> bytes:
                return flipped(good)

            monkeypatch.setattr(Control, "gz", lying)
        return start

    client_saw: list[str] = []

    async def watch(handle: WorkflowHandle[Any, Any], journal: Path) -> None:
        with pytest.raises(plan_store.PlanStoreError) as refused:
            await temporal.watch(handle, Lines("plain", stream=io.StringIO()))
        client_saw.append(str(refused.value))

    failed: list[WorkflowFailureError] = []
    agent, _, entries, plan = run_workflow(
        temporal_server,
        "two_dcs_order_pause",
        in_tmp,
        monkeypatch,
        forge=prepare,
        worker_store=theirs,
        steer=watch,
        failed=failed,
    )
    sent = sum(len(agent.program(h.host)) for h in plan.hosts)
    cause = failed[0].cause if failed else None
    record_property(
        "observed",
        f"{lie}: workflow failed with {getattr(cause, 'type', None)}: {str(cause)[:160]}; journal records: "
        f"{len(entries)}; operations sent to hosts: {sent}; the client said: {(client_saw or [''])[0][:200]}",
    )
    assert isinstance(cause, ApplicationError) and cause.type == "PlanStoreError"
    assert sent == 0 and entries == []
    assert client_saw and "could not read its plan" in client_saw[0] and "\n" not in client_saw[0]


def test_a_plan_of_several_parts_is_fetched_at_once_and_joined(
    temporal_server: DevServer, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts of 400 bytes (instead of 256 KiB): the workflow asks for them all at once and the run succeeds."""
    monkeypatch.setattr(plan_store, "PART", 400)
    seen: dict[str, Any] = {}

    async def history(handle: WorkflowHandle[Any, Any], journal: Path) -> None:
        await handle.result()
        events = [
            e for e in (await handle.fetch_history()).events if e.HasField("activity_task_scheduled_event_attributes")
        ]
        names = [e.activity_task_scheduled_event_attributes.activity_type.name for e in events]
        seen["parts"] = names.count("plan_part")
        seen["first"] = names[: seen["parts"]]

    _, outcome, _, plan = run_workflow(temporal_server, "multi_hop", in_tmp, monkeypatch, steer=history)
    gz_size = plan_store.store(in_tmp / "artifacts", plan_store.text_of(plan)).gz_size
    assert outcome["exit_code"] == 0, outcome
    assert seen["parts"] == -(-gz_size // 400) > 2 and seen["first"] == ["plan_part"] * seen["parts"]


def test_a_datacenter_worker_needs_a_plan_key() -> None:
    from upgrader.errors import RefusedError

    inventory = load_inventory(CASES / "two_dcs_order_pause" / "inventory.yml")
    with pytest.raises(RefusedError, match="runs only signed plans"):
        worker.workers(None, inventory, datacenters=["ny5"], control=False, state_dir=Path("."))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "tls", "warned"),
    [
        ("127.0.0.1:7233", False, False),
        ("localhost:7233", False, False),
        ("[::1]:7233", False, False),
        ("temporal.example:7233", False, True),
        ("10.0.0.5:7233", False, True),
        ("temporal.example:7233", True, False),
    ],
)
def test_plaintext_to_a_remote_server_is_warned(address: str, tls: bool, warned: bool) -> None:
    from upgrader.temporal.client import plaintext_warning
    from upgrader.temporal.settings import Settings

    found = Settings(address=address, tls_ca=Path("/ca.pem") if tls else None)
    assert (plaintext_warning(found) is not None) is warned


def test_a_promote_counts_only_at_the_gate_the_run_waits_at_unless_ahead(
    temporal_server: DevServer, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the local engine: an early promote for a later gate is ignored; one sent --ahead passes it."""
    plan = case_plan("manual_gates")
    gates = [p.gate.id for p in plan.phases if p.gate is not None]
    assert len(gates) >= 3

    async def steer(handle: WorkflowHandle[Any, Any], journal: Path) -> None:
        await journal_has(journal, lambda es: any(e["event"] == "gate-wait" and e["gate"] == gates[0] for e in es))
        await handle.signal("decide", decision(DecisionKind.PROMOTE, gates[1], reason="early"))
        await handle.signal(
            "decide", {**decision(DecisionKind.PROMOTE, gates[2], reason="approved ahead"), "ahead": True}
        )
        await handle.signal("decide", decision(DecisionKind.PROMOTE, gates[0]))
        await journal_has(journal, lambda es: any(e["event"] == "gate-wait" and e["gate"] == gates[1] for e in es))
        await asyncio.sleep(1.0)
        assert (await handle.query("progress"))["waiting"] == gates[1]  # the early promote did not count
        await handle.signal("decide", decision(DecisionKind.PROMOTE, gates[1], reason="now"))
        for gate in gates[3:]:
            await journal_has(journal, lambda es, g=gate: any(e["event"] == "gate-wait" and e["gate"] == g for e in es))  # type: ignore[misc]
            await handle.signal("decide", decision(DecisionKind.PROMOTE, gate))

    _, outcome, entries, _ = run_workflow(temporal_server, "manual_gates", in_tmp, monkeypatch, steer=steer)
    assert outcome["exit_code"] == 0, outcome
    ends = {e["gate"]: e["decision"] for e in entries if e["event"] == "gate-end"}
    assert ends[gates[1]]["reason"] == "now" and ends[gates[2]]["ahead"] is True
