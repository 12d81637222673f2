"""Capture the saved histories: representative runs through the real workflow and workers, saved as JSON.

    PYTHONPATH=$PWD .venv/bin/python -m tests.histories.capture            # every scenario
    PYTHONPATH=$PWD .venv/bin/python -m tests.histories.capture abort lost # some of them

Each scenario runs once on a dev server of its own (tests/temporal_server.py, loopback, deleted afterwards)
with the workers of tests/temporal_harness.py (the agent stood in), and is written to
tests/histories/<name>.json: every execution of the run (the parent, each child, each continue-as-new
link), each as ``WorkflowHandle.fetch_history().to_json()`` with its workflow id.  Re-capture after a
change that is *meant* to break runs in flight (and was released with no run in flight): the replay
test (tests/unit/test_temporal_replay.py) says which change needs it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import temporalio
from temporalio.client import WorkflowHandle

from tests.temporal_harness import Execution, Steer, decision, journal_has, run_workflow
from tests.temporal_server import DevServer
from tests.unit.test_plan_ops import Agent, case_plan
from upgrader.engine.gates import DecisionKind
from upgrader.models.plan import Plan

HERE = Path(__file__).parent


def saved() -> list[Path]:
    """The saved histories, one file per scenario."""
    return sorted(HERE.glob("*.json"))


def load(path: Path) -> list[Execution]:
    data = json.loads(path.read_text())
    return [Execution(**e) for e in data["executions"]]


def _gates(case: str) -> list[str]:
    return [p.gate.id for p in case_plan(case).phases if p.gate is not None]


def _promote_each(case: str) -> Steer:
    async def steer(handle: WorkflowHandle[Any, Any], journal: Path) -> None:
        for gate in _gates(case):
            await journal_has(journal, lambda es, g=gate: any(e["event"] == "gate-wait" and e["gate"] == g for e in es))  # type: ignore[misc]
            await handle.signal("decide", decision(DecisionKind.PROMOTE, gate))

    return steer


async def _abort_at_first_gate(handle: WorkflowHandle[Any, Any], journal: Path) -> None:
    await journal_has(journal, lambda es: any(e["event"] == "gate-wait" for e in es))
    await handle.signal("decide", decision(DecisionKind.ABORT, reason="INC-9 captured abort"))


class LostOnce(Agent):
    """The stand-in agent whose call for ``host``'s first live program raises: the activity fails as a
    worker lost mid-program does (the workflow's RunHost answer is ``lost``; the policy recovers the host)."""

    def __init__(self, plan: Plan, fail: set[tuple[str, str]] | None, lost: tuple[str, str]) -> None:
        super().__init__(plan, fail)
        self.lost = lost

    def __call__(self, transport: Any, *, ops: list[dict[str, Any]], **kw: Any) -> Any:
        host, op = self.lost
        if transport.host == host and any(o["op"] == op for o in ops):
            self.lost = ("", "")
            raise RuntimeError(f"worker lost while {host} ran {op} (stand-in)")
        return super().__call__(transport, ops=ops, **kw)


def _canary(case: str) -> str:
    return case_plan(case).phases[0].hosts[0]


@dataclass(frozen=True)
class Scenario:
    case: str
    what: str
    fail: Callable[[], set[tuple[str, str]]] = lambda: set()
    steer: Steer | None = None
    lost: Callable[[], tuple[str, str]] | None = None
    expect: dict[str, Any] = field(default_factory=dict)


SCENARIOS = {
    "clean": Scenario("single_dc_canary_waves", "a clean canary and waves", expect={"exit_code": 0}),
    "two-dcs": Scenario("two_dcs_order_pause", "two datacenters in order, a pause", expect={"exit_code": 0}),
    "failed-rolled-back": Scenario(
        "two_dcs_order_pause",
        "the canary fails at start and is rolled back",
        fail=lambda: {(_canary("two_dcs_order_pause"), "start")},
        expect={"exit_code": 3, "status": "failed-rolled-back"},
    ),
    "promote": Scenario(
        "manual_gates", "promoted at every manual gate", steer=_promote_each("manual_gates"), expect={"exit_code": 0}
    ),
    "abort": Scenario(
        "manual_gates", "aborted at the first gate", steer=_abort_at_first_gate, expect={"status": "aborted"}
    ),
    "lost": Scenario(
        "single_dc_canary_waves",
        "the canary's worker is lost mid-program (its activity fails); the policy recovers the host",
        lost=lambda: (_canary("single_dc_canary_waves"), "start"),
    ),
}


def capture(name: str, server: DevServer, work: Path) -> Path:
    scenario = SCENARIOS[name]
    kept: list[Execution] = []
    with pytest.MonkeyPatch.context() as mp:
        lost = scenario.lost() if scenario.lost else None
        _, outcome, _, _ = run_workflow(
            server,
            scenario.case,
            work,
            mp,
            fail=scenario.fail(),
            steer=scenario.steer,
            keep=kept.extend,
            make_agent=(lambda plan, fail: LostOnce(plan, fail, lost)) if lost else Agent,
        )
    wrong = {k: outcome[k] for k, v in scenario.expect.items() if outcome[k] != v}
    if wrong:
        raise SystemExit(f"{name}: the run ended {wrong}, not {scenario.expect}: {outcome['message']}")
    path = HERE / f"{name}.json"
    data = {
        "scenario": name,
        "what": scenario.what,
        "case": scenario.case,
        "outcome": {k: outcome[k] for k in ("exit_code", "status", "message")},
        "temporalio": temporalio.__version__,
        "executions": [e.__dict__ for e in kept],
    }
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return path


def main(names: list[str]) -> int:
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        print(f"no scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="upgrader-histories-") as tmp:
        server = DevServer(Path(tmp))
        server.start()
        try:
            for name in names or list(SCENARIOS):
                work = Path(tmp) / name
                work.mkdir()
                path = capture(name, server, work)
                runs = json.loads(path.read_text())
                events = sum(len(e["history"]["events"]) for e in runs["executions"])
                print(
                    f"{path.relative_to(HERE.parents[1])}: {len(runs['executions'])} execution(s), {events} events, "
                    f"{runs['outcome']['status']}"
                )
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
