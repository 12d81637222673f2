"""The reviewed plan is the program: for every golden planner case, the engine sends exactly the plan's steps.

The engine (engine/apply.py) runs against a recording stand-in for the agent call: each host's
operations are collected in the order they would go over the wire.  Leaving out the engine's own
bookkeeping (locks, facts, pruning), they must be the plan's steps, in order, each operation
exactly as the plan holds it plus its step id (and, for staging, where the artifact was uploaded).
A failure sends the plan's own undo operations; the journal names every step of the plan.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import plan_files
from upgrader.engine import gates, remote
from upgrader.engine.apply import Apply
from upgrader.engine.host_actions import HostActions
from upgrader.engine.pool import GroupResult, HostResult
from upgrader.engine.progress import Lines
from upgrader.journal import Journal
from upgrader.models.plan import Plan
from upgrader.planning.describe import describe
from upgrader.transport.base import Result
from upgrader.vocabulary import Event

CASES = Path(__file__).parent / "planner_cases"
REPO = Path(__file__).resolve().parents[2]
BOOKKEEPING = {"lock", "facts", "prune"}


class FakeTransport:
    """Stands for a host's agent session (remote.call's first argument) and its transport."""

    def __init__(self, host: str) -> None:
        self.host = host

    def put(self, local: Path, remote_path: str) -> None:
        pass

    def call(self, **kwargs: Any) -> remote.AgentResult:
        """As Session.call: the test's Agent, patched over Session.call, answers."""
        return remote.Session.call(self, **kwargs)  # type: ignore[arg-type]


class FakePool:
    parallel = 4
    handshake_retries = 0

    def __getitem__(self, host: str) -> FakeTransport:
        return FakeTransport(host)

    session = __getitem__

    def each(self, hosts: Any, fn: Callable[[str], Any], limit: int | None = None) -> GroupResult[Any]:
        out: dict[str, HostResult[Any]] = {}
        for host in hosts:
            try:
                out[host] = HostResult(host, fn(host))
            except Exception as exc:
                out[host] = HostResult(host, None, exc)
        return GroupResult(out)


class Agent:
    """Records what each host is sent; answers every operation with success (or fails the named ones)."""

    def __init__(self, plan: Plan, fail: set[tuple[str, str]] | None = None) -> None:
        self.plan = plan
        self.fail = fail or set()
        self.sent: dict[str, list[dict[str, Any]]] = {h.host: [] for h in plan.hosts}

    def __call__(self, transport: FakeTransport, *, ops: list[dict[str, Any]], **_: Any) -> remote.AgentResult:
        host = transport.host
        self.sent[host] += [json.loads(json.dumps(o)) for o in ops]  # as it goes over the wire
        results = []
        for o in ops:
            ok = (host, o["op"]) not in self.fail
            data: dict[str, Any] = {} if ok else {"error": "injected failure"}
            if o["op"] == "facts":
                data = {"installed": self.plan.host(host).from_version, "staged_sha": {}}
            results.append(remote.OpResult(o["op"], o.get("step"), ok, data))
            if not ok:
                break
        return remote.AgentResult(host, Result(host, (), 0), results, expected=len(ops))

    def program(self, host: str) -> list[dict[str, Any]]:
        return [o for o in self.sent[host] if o["op"] not in BOOKKEEPING]


def run_engine(
    plan: Plan,
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    fail: set[tuple[str, str]] | None = None,
    decide: gates.DecisionKind | None = gates.DecisionKind.PROMOTE,
) -> tuple[Agent, list[dict[str, Any]]]:
    agent = Agent(plan, fail)
    monkeypatch.setattr(remote.Session, "call", lambda session, **kw: agent(session, **kw))
    monkeypatch.setattr(HostActions, "check_artifacts", lambda self: None)  # golden playbooks name no real files
    journal = Journal.create(tmp / "state", "run-1")
    journal.record(Event.RUN_START, kind="apply", component=plan.component)
    for phase in plan.phases:  # manual gates: decided ahead, as `upgrader promote --gate G --ahead` would
        if phase.gate is not None and decide is not None:
            gates.request(journal.directory, decide, gate=phase.gate.id, operator="pytest", reason="test", ahead=True)
    engine = Apply(
        plan,
        FakePool(),  # type: ignore[arg-type]  # the engine uses only what it has of a Pool
        journal,
        Lines("json", stream=io.StringIO()),  # type: ignore[arg-type]
        artifacts=tmp,
        operator="pytest",
        sleep=lambda _: None,
    )
    engine.run()
    entries = [json.loads(line) for line in journal.path.read_text().splitlines()]
    return agent, entries


def expected(step: Any) -> dict[str, Any]:
    """The plan's operation as sent; a bake goes as rounds of its checks (duration 0), timed by the controller."""
    return {**step.op, "step": step.id, **({"duration": 0} if step.op["op"] == "bake" else {})}


def without_upload(op: dict[str, Any]) -> dict[str, Any]:
    if op["op"] == "stage":
        assert op.pop("upload").startswith("/var/tmp/upgrader-run-1-")
    return op


def sent(program: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a host was sent, each bake's repeated rounds counted once."""
    out: list[dict[str, Any]] = []
    for op in map(without_upload, program):
        if not (out and op["op"] == "bake" and out[-1] == op):
            out.append(op)
    return out


CASE_NAMES = sorted(p.name for p in CASES.iterdir() if p.is_dir())


def case_plan(case: str) -> Plan:
    folder = CASES / case
    facts = folder / "facts.yml"
    return plan_files(folder / "playbook.yml", folder / "inventory.yml", facts if facts.exists() else None)


@pytest.mark.parametrize("case", CASE_NAMES)
def test_the_engine_sends_exactly_the_plans_steps_in_order(
    case: str, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = case_plan(case)
    agent, _ = run_engine(plan, in_tmp, monkeypatch)
    assert plan.hosts or case == "skips"
    for host in plan.hosts:
        assert sent(agent.program(host.host)) == [expected(s) for s in host.steps], host.host


@pytest.mark.parametrize("case", CASE_NAMES)
def test_the_journal_names_every_step_of_the_plan(case: str, in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = case_plan(case)
    _, entries = run_engine(plan, in_tmp, monkeypatch)
    for host in plan.hosts:
        journaled = [s for e in entries if e.get("host") == host.host for s in e.get("steps", [])]
        assert [s for s in journaled if s.startswith(host.host + "/")] == [s.id for s in host.steps]


def test_a_failure_sends_the_plans_undo(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = case_plan("multi_hop")
    first = plan.hosts[0]
    agent, _ = run_engine(plan, in_tmp, monkeypatch, fail={(first.host, "verify")})
    sent = agent.program(first.host)
    undo = next(s.undo for s in first.steps if s.action == "stop")
    assert undo is not None and undo["op"] == "rollback" and undo["to"] == first.from_version
    assert sent[-1] == {**undo, "step": f"{first.host}/rollback"}


def test_a_staging_failure_sends_each_stage_steps_undo(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = case_plan("multi_hop")
    first = plan.hosts[0]
    agent, _ = run_engine(plan, in_tmp, monkeypatch, fail={(first.host, "stage")})
    for host in plan.hosts:
        undos = [o for o in agent.program(host.host) if o["op"] == "unstage"]
        assert undos == [{**s.undo, "step": s.id} for s in host.steps if s.action == "stage" and s.undo]


def test_what_a_reviewer_reads_is_rendered_from_the_operations() -> None:
    plan = plan_files(REPO / "playbooks" / "ordergw-5.2.0.yml", REPO / "inventories" / "prod-na.yml")
    host = plan.hosts[0]
    text = {s.action + (s.version or ""): describe(s, plan.spec.install.root) for s in host.steps}
    migrate = next(s for s in host.steps if s.action == "migrate")
    assert text[f"migrate{migrate.version}"][0] == (
        "back up /etc/ordergw/ordergw.conf; run " + " ".join(migrate.op["argv"])
    )
    assert text["switch5.2.0"][0] == "point /opt/ordergw/current at releases/5.2.0 (atomic rename)"
    assert text["stop5.1.0"][1].startswith(f"roll back to {host.from_version}: ")
    assert text["stage5.2.0"][1] == "remove /opt/ordergw/releases/5.2.0 if this run staged it"
    edited = migrate.model_copy(update={"op": {**migrate.op, "argv": ["/bin/evil"]}})
    assert describe(edited, plan.spec.install.root)[0].endswith("run /bin/evil")  # the text follows the op


def test_carry_over_is_a_step_of_its_own(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = CASES / "multi_hop"
    text = (folder / "playbook.yml").read_text()
    assert text.count("  root: /opt/app\n") == 1
    carry = "  root: /opt/app\n  carry_over: [conf/app.ini]\n"
    (in_tmp / "playbook.yml").write_text(text.replace("  root: /opt/app\n", carry))
    plan = plan_files(in_tmp / "playbook.yml", folder / "inventory.yml")
    host = plan.hosts[0]
    carries = [s for s in host.steps if s.action == "carry_over"]
    assert [s.version for s in carries] == host.path and len({s.id for s in host.steps}) == len(host.steps)
    assert carries[0].op == {
        "op": "carry_over",
        "version": host.path[0],
        "from": host.from_version,
        "files": ["conf/app.ini"],
    }
    agent, _ = run_engine(plan, in_tmp, monkeypatch)
    assert sent(agent.program(host.host)) == [expected(s) for s in host.steps]
