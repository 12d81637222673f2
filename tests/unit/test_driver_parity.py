"""One run policy, two drivers: each scenario of one table runs on the local driver (engine/apply.py,
threads) and on the Temporal driver (temporal/workflow.py, on the session's dev server with in-process
workers), both against the same fake hosts (tests/fakes: the real agent on a directory tree).

Both must give the same journal events in the same order within each host and phase (and the same
run-level decisions: phases, gates, halts, holds, aborts, rollbacks), the same end states, the same
versions on the hosts and the same exit code.  A scenario added to SCENARIOS runs on both.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tests.fakes.agent_host import release_tarball
from tests.fakes.scenario import FROM, ROOT, TO, Scenario, entries
from tests.temporal_server import DevServer
from upgrader.commands.inputs import load_inputs
from upgrader.engine import gates
from upgrader.engine.gates import DecisionKind
from upgrader.engine.rollback import rollback_hosts
from upgrader.errors import TransportError
from upgrader.journal import Journal, read
from upgrader.loading.inputs import load_inventory
from upgrader.planning import signing
from upgrader.temporal import packed, plan_store
from upgrader.temporal.messages import Start
from upgrader.temporal.settings import CONTROL_QUEUE

KEY = b"parity-plan-key-0123456789abcdef"
GATED = {"canary": {"promote": "manual", "promote_timeout": "60s", "scope": "datacenter"}}
# Events of how a driver splits its host work (one lock/stage per datacenter under Temporal), not decisions.
SPLIT = {"artifacts-checked", "locks", "locks-released", "stage-begin", "stage-end", "run-start"}
Decide = Callable[[DecisionKind, "str | None"], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    name: str
    datacenters: dict[str, list[str]]
    bad: frozenset[str] = frozenset()  # fail their checks on the target, at once
    on_failure: str = "host"
    playbook: dict[str, Any] = field(default_factory=dict)
    rollout: dict[str, Any] = field(default_factory=dict)
    groups: dict[str, Any] | None = None
    steer: str | None = None  # "promote" each gate, "abort" at the first, "emergency" rollback then promote
    spoil: str | None = None  # "bake": the canary's checks fail during its bake; "lose": the canary is lost then
    via: str | None = None  # a multi-hop path: FROM → via → TO


NY3 = {"ny": ["ny-1", "ny-2", "ny-3"]}
TWO = {"ny": ["ny-1", "ny-2"], "ch": ["ch-1", "ch-2"]}
SCENARIOS = [
    Case("policy-host", NY3, frozenset({"ny-3"}), "host", rollout={"max_failures": 2}),
    Case("policy-wave", NY3, frozenset({"ny-3"}), "wave", rollout={"batch": 2}),
    Case("policy-run", NY3, frozenset({"ny-3"}), "run"),
    Case("policy-hold", NY3, frozenset({"ny-3"}), "hold"),
    Case(
        "run-budget",
        {"ny": ["ny-1", "ny-2", "ny-3", "ny-4"]},
        frozenset({"ny-2", "ny-3"}),
        rollout={"max_failures": 1},
    ),
    Case("dc-budget", TWO, frozenset({"ny-2"}), rollout={"max_failures": 3, "max_failures_per_datacenter": 1}),
    Case(
        "group-one-dc",
        NY3,
        frozenset({"ny-3"}),
        "run",
        groups={"pair": {"hosts": ["ny-1", "ny-2"], "max_unavailable": 1}},
    ),
    Case(
        "group-two-dcs",
        TWO,
        frozenset({"ch-2"}),
        "run",
        groups={"pair": {"hosts": ["ny-2", "ch-1"], "max_unavailable": 1}},
    ),
    Case("promote", TWO, playbook=GATED, steer="promote"),
    Case("abort-at-gate", TWO, playbook=GATED, steer="abort"),
    Case("bake-failure", TWO, on_failure="wave", spoil="bake"),
    Case("lost-host", TWO, spoil="lose"),
    Case("emergency-rollback", TWO, playbook=GATED, steer="emergency"),
    Case("multi-hop", TWO, via="5.1.5"),
    Case("multi-hop-failure", NY3, frozenset({"ny-3"}), "wave", via="5.1.5"),
]


def build(case: Case, tmp: Path) -> Scenario:
    """The case's fleet of fake hosts and its plan."""
    book = dict(case.playbook)
    if case.via is not None:  # a release between: the target is reached from it only
        sha = release_tarball(
            tmp / "artifacts" / f"app-{case.via}.tar.gz", {"VERSION": case.via + "\n", "health": "ok\n"}
        )
        book["upgrade_from"] = f">={case.via},<{TO}"
        book["via"] = [
            {
                "version": case.via,
                "upgrade_from": f">={FROM},<{case.via}",
                "artifact": {"file": f"app-{case.via}.tar.gz", "sha256": sha},
            }
        ]
    s = Scenario.build(
        tmp,
        case.datacenters,
        bad=case.bad,
        on_failure=case.on_failure,
        playbook=book,
        groups=case.groups,
        **case.rollout,
    )
    if case.spoil is not None:
        s.hosts[s.plan.phases[0].hosts[0]].before_program.append(_spoiler(case.spoil))
    return s


@pytest.fixture
def scenario(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Case, Scenario]]:
    case: Case = request.param
    s = build(case, tmp_path)
    yield case, s
    s.close()


def _spoiler(how: str) -> Callable[[Any, dict[str, Any]], None]:
    def spoil(host: Any, program: dict[str, Any]) -> None:
        if not any(o.get("op") == "bake" for o in program.get("ops", [])):
            return
        if how == "bake":  # the release it runs now fails its health check: the bake's round sees it
            host.path(f"{ROOT}/releases/{TO}/health").write_text("bad\n")
        else:  # the connection drops before this round runs, and the host answers no call from now on
            host.unreachable = True
            raise TransportError(host.name, "connection lost (fake host)", "check the host")

    return spoil


def _emergency(s: Scenario, host: str) -> None:
    """`upgrader rollback` of ``host`` from another terminal while the run waits at a gate."""
    spec = load_inputs(s.playbook, s.inventory).playbook.model
    pool = s.hosts.pool()
    try:
        journal = Journal.create(s.tmp / "emergency", "rb-1")
        rollback_hosts(pool, spec, [host], journal, operator="ops@ctl", reason="INC-7", to=None)
    finally:
        pool.close()


async def _steer(case: Case, s: Scenario, journal: Path, decide: Decide) -> None:
    """What the operators do while the run goes: promote, abort, or roll a host back at the first gate."""
    if case.steer is None:
        return
    for n, gate in enumerate(p.gate.id for p in s.plan.phases if p.gate is not None):
        found = await _journal_has(journal, _at_gate_or_end(gate))
        if any(e["event"] == "run-end" for e in found):
            return
        if case.steer == "abort":
            await decide(DecisionKind.ABORT, None)
            return
        if case.steer == "emergency" and n == 0:
            await asyncio.to_thread(_emergency, s, s.plan.phases[1].hosts[0])  # not watched: no race
        await decide(DecisionKind.PROMOTE, gate)


def _at_gate_or_end(gate: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda es: any(e["event"] == "run-end" or e.get("gate") == gate for e in es)


async def _journal_has(path: Path, predicate: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    for _ in range(900):
        if path.exists():
            found = [dict(r.fields) for r in read(path)]  # the lines as written (read gives typed records)
            if predicate(found):
                return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never reached the expected point")


# ------------------------------------------------------------ the two drivers


def run_local(case: Case, s: Scenario) -> tuple[int, dict[str, str], list[dict[str, Any]]]:
    journal = s.journal("run-local")
    engine = s.engine(journal)

    async def decide(kind: DecisionKind, gate: str | None) -> None:
        gates.request(journal.directory, kind, gate=gate, operator="pytest@ctl", reason="parity")

    steering = threading.Thread(target=lambda: asyncio.run(_steer(case, s, journal.path, decide)), daemon=True)
    steering.start()
    try:
        outcome = engine.run()
    finally:
        engine.pool.close()
    steering.join(30)
    return int(outcome.exit_code), {h.name: str(h.state) for h in outcome.hosts.values()}, entries(journal)


def run_temporal(case: Case, s: Scenario, server: DevServer) -> tuple[int, dict[str, str], list[dict[str, Any]]]:
    inventory = load_inventory(s.inventory)
    run_id = f"20261205T000000Z-app-{secrets.token_hex(2)}"
    state = s.tmp / "state-temporal"
    journal = state / "runs" / run_id / "journal.jsonl"
    factory = s.hosts.pool()._factory  # the fake hosts' transports, for the datacenter workers' own Pool

    # Imported here, not with the module: test_temporal_tree imports this module, and its own workflows are
    # validated in Temporal's sandbox, which imports them again, where the harness's imports fail.
    from tests.temporal_harness import fleet_workers

    async def go() -> dict[str, Any]:
        client = await Client.connect(server.address)
        async with fleet_workers(client, inventory, state, factory, plan_key=KEY):
            text = plan_store.text_of(s.plan)
            start = Start(
                run_id=run_id,
                plan=plan_store.store(s.artifacts, text),
                operator="pytest@ctl",
                artifacts=str(s.artifacts),
                run_start={"seq": 1, "at": "2026-12-05T00:00:00.000+00:00", "event": "run-start", "run": run_id},
            )
            start.signature = signing.sign_run(text, run_id, start.python, start.break_lock, KEY)
            handle = await client.start_workflow(
                "upgrade",
                start,
                id=f"parity-{run_id}",
                task_queue=CONTROL_QUEUE,
                execution_timeout=timedelta(seconds=120),
            )

            async def decide(kind: DecisionKind, gate: str | None) -> None:
                decision = {"kind": str(kind), "gate": gate, "operator": "pytest@ctl", "reason": "parity"}
                await handle.signal("decide", {**decision, "at": gates.now()})

            await _steer(case, s, journal, decide)
            result: dict[str, Any] = await handle.result()
            return result

    outcome = asyncio.run(go())
    states = {row[0]: row[2] for row in packed.rows_of(outcome)}
    return int(outcome["exit_code"]), states, [dict(r.fields) for r in read(journal)]


# ------------------------------------------------------------ what must be the same


def by_host_and_phase(found: list[dict[str, Any]]) -> dict[tuple[int | None, str], list[str]]:
    """Each host's events, per phase they came in (None: outside a phase), in order."""
    out: dict[tuple[int | None, str], list[str]] = {}
    phase: int | None = None
    for e in found:
        if e["event"] == "phase-begin":
            phase = e["phase"]
        if "host" in e and e["event"] not in SPLIT:
            out.setdefault((phase, e["host"]), []).append(e["event"])
        if e["event"] == "phase-end":
            phase = None
    return out


def run_level(found: list[dict[str, Any]]) -> list[str]:
    """The run's own decisions, in order: phases, gates, halts, holds, aborts, rollbacks, the end."""
    return [e["event"] for e in found if "host" not in e and e["event"] not in SPLIT]


def _marked(case: Case) -> Any:
    """A fault scenario is a row of the reliability table: both drivers, the same run."""
    fault = case.bad or case.spoil or case.steer in ("abort", "emergency")
    marks = [pytest.mark.reliability(f"driver parity: {case.name}", EXPECTED)] if fault else []
    return pytest.param(case, id=case.name, marks=marks)


EXPECTED = (
    "the local and the Temporal driver give the same exit code, end states, versions on the hosts, the same "
    "events in the same order per host and phase, and the same run-level decisions"
)


@pytest.mark.parametrize("scenario", [_marked(c) for c in SCENARIOS], indirect=True)
def test_both_drivers_make_the_same_run(
    scenario: tuple[Case, Scenario],
    temporal_server: DevServer,
    tmp_path_factory: pytest.TempPathFactory,
    record_property: Callable[[str, str], None],
) -> None:
    case, s = scenario
    local = run_local(case, s)
    local_versions = s.versions()
    twin = build(case, tmp_path_factory.mktemp(case.name))
    try:
        remote = run_temporal(case, twin, temporal_server)
        remote_versions = twin.versions()
    finally:
        twin.close()
    (code, states, found), (t_code, t_states, t_found) = local, remote
    assert by_host_and_phase(t_found) == by_host_and_phase(found)
    assert run_level(t_found) == run_level(found)
    assert (t_code, t_states, remote_versions) == (code, states, local_versions)
    if case.via is not None:  # the plan did go by the release between
        assert all(h.path == [case.via, TO] for h in s.plan.hosts)
    record_property(
        "observed",
        f"{case.name}: exit {code} on both; states {states}; versions {local_versions}; "
        f"{len(by_host_and_phase(found))} host/phase event lists equal",
    )
