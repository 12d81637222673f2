"""A rolling upgrade of every worker under a run in flight: separate `upgrader worker` processes, fake hosts.

The run (two datacenters of fake hosts running the real agent, tests/fakes/scenario.py) is started with
`apply --engine temporal` and waits at its first manual gate.  Then, as README (Engines, upgrading the
workers) says to: each datacenter's workers are replaced one at a time (a new process polls, the old one
gets SIGTERM and ends gracefully), then the control worker.  The new control worker is a new build whose
workflow code changed under ``workflow.patched`` (tests/histories/altered.Patched): it replays the run's
history to carry it on.  Every process is the real CLI (`python -m tests.fakes.cli HOSTS worker ...`: the
local transport instead of SSH), started and stopped by its own PID.  Then the gates are promoted, and the
run must end with exit 0 and every host upgraded and verified exactly once.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError

from tests.fakes.cli import WORKFLOWS_ENV
from tests.fakes.scenario import ROOT, TO, UNIT, Scenario
from tests.histories import altered
from tests.temporal_harness import Execution, histories
from tests.temporal_server import DevServer
from tests.unit.test_temporal_replay import replay
from upgrader.temporal.client import workflow_id
from upgrader.temporal.hosts_workflow import HostsWorkflow

REPO = Path(__file__).resolve().parents[2]
KEY = "rolling-test-plan-key-0123456789abcdef"
GRACEFUL = 60.0  # seconds a SIGTERMed worker may take to end (its activities in flight finish first)
CHILD = "upgrader.temporal.hosts_workflow:HostsWorkflow"  # unchanged in the new build, registered beside it
NEW_BUILD = f"tests.histories.altered:Patched,{CHILD}"


class Processes:
    """`upgrader` processes over the scenario's fake hosts; logs in the test's directory; stopped by PID."""

    def __init__(self, s: Scenario, server: DevServer) -> None:
        self.s = s
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "UPGRADER_TEMPORAL_ADDRESS": server.address,
            "UPGRADER_PLAN_KEY": KEY,
            "UPGRADER_STATE_DIR": str(s.tmp / "state"),
            "UPGRADER_ARTIFACTS": str(s.artifacts),
            "UPGRADER_OPERATOR": "pytest",
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *argv: str, **env: str) -> subprocess.Popen[bytes]:
        log = (self.s.tmp / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.cli", str(self.s.hosts.base), *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**self.env, **env},
            cwd=REPO,
        )
        return self.procs[name]

    def worker(self, name: str, *serve: str, **env: str) -> None:
        """A worker, once it polls (its start line is written after it connected)."""
        self.start(name, "worker", "-i", str(self.s.inventory), *serve, **env)
        until(lambda: "polling" in self.log(name) or self.procs[name].poll() is not None, 60)
        assert self.procs[name].poll() is None, self.log(name)

    def stop(self, name: str) -> tuple[int, float]:
        """SIGTERM (as systemd stops a unit); its exit code and the seconds it took to end."""
        started = time.monotonic()
        os.kill(self.procs[name].pid, signal.SIGTERM)
        code = self.procs[name].wait(timeout=GRACEFUL)
        return code, time.monotonic() - started

    def log(self, name: str) -> str:
        path = self.s.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def upgrader(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "upgrader", *argv],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=REPO,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=GRACEFUL)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def until(ready: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready within {seconds:g}s")
        time.sleep(0.1)


def journal(s: Scenario) -> list[dict[str, Any]]:
    runs = sorted((s.tmp / "state" / "runs").glob("*/journal.jsonl"))
    return [json.loads(line) for line in runs[-1].read_text().splitlines()] if runs else []


def waiting_gate(s: Scenario, promoted: list[str]) -> str | None:
    """The gate the run waits at now (not yet promoted), if any."""
    for e in journal(s):
        if e["event"] == "gate-wait" and e["gate"] not in promoted:
            return str(e["gate"])
    return None


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[Scenario]:
    s = Scenario.build(
        tmp_path,
        {"ny": ["ny-1", "ny-2", "ny-3"], "ch": ["ch-1", "ch-2"]},
        playbook={"canary": {"promote": "manual", "promote_timeout": "600s", "bake_interval": "2s"}},
    )
    yield s
    s.close()


@pytest.mark.reliability(
    "every worker replaced mid-run (a rolling upgrade): the datacenter workers one at a time, then the control "
    "worker with changed workflow code under workflow.patched; separate processes, SIGTERM, while the run waits "
    "at a manual gate",
    "the run carries on under the new workers: promoted, exit 0, every host upgraded and verified exactly once",
)
def test_a_rolling_upgrade_of_every_worker_mid_run(
    gated: Scenario, temporal_server: DevServer, record_property: Callable[[str, object], None]
) -> None:
    s = gated
    run = Processes(s, temporal_server)
    try:
        run.worker("control-v1", "--control")
        for name, dc in (("ny-a", "ny"), ("ny-b", "ny"), ("ch-a", "ch")):
            run.worker(name, "--datacenter", dc)
        client = to_the_first_gate(run, s)
        at_gate = len(journal(s))

        stopped = {}
        for new, old, dc in (("ny-c", "ny-a", "ny"), ("ny-d", "ny-b", "ny"), ("ch-b", "ch-a", "ch")):
            run.worker(new, "--datacenter", dc)
            stopped[old] = run.stop(old)
        stopped["control-v1"] = run.stop("control-v1")  # no control worker now: the run pauses
        run.worker("control-v2", "--control", **{WORKFLOWS_ENV: NEW_BUILD})

        promoted = promote_until_done(run, s, client)
        code = client.wait(timeout=10)
        # the history as recorded across the swaps replays against the build now running (a fresh worker's view)
        for execution in asyncio.run(executions(temporal_server)):
            replay(execution, [altered.Patched, HostsWorkflow])
    finally:
        run.close()

    entries = journal(s)
    after = entries[at_gate:]
    verified = {
        name: sum(1 for e in h.journal("app") if e["op"] == "verify" and e["phase"] == "end" and e["ok"])
        for name, h in s.hosts.hosts.items()
    }
    ran_on = {w: [h for h in s.hosts.hosts if f" {h} " in run.log(w)] for w in ("ny-c", "ny-d", "ch-b")}
    record_property(
        "observed",
        f"apply exit {code}; gates promoted {promoted} after the upgrade; old workers ended "
        + ", ".join(f"{w} exit {c} in {t:.1f}s" for w, (c, t) in stopped.items())
        + f"; new control worker (altered.Patched) wrote {len(after)} records, its history replays; "
        f"hosts verified {verified}; "
        f"new datacenter workers ran {ran_on}",
    )
    assert code == 0, run.log("apply")[-3000:]
    assert all(c == 0 for c, _ in stopped.values()), stopped
    assert entries[-1]["event"] == "run-end" and entries[-1]["status"] == "succeeded"
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert promoted and all(e["outcome"] == "promoted" for e in entries if e["event"] == "gate-end")
    assert verified == {h: 1 for h in s.hosts.hosts}
    for name, h in s.hosts.hosts.items():
        assert (h.current(ROOT), h.state(UNIT), h.lock("app")) == (TO, "active", None), name
    assert any(ran_on.values()), "no host activity ran on a new datacenter worker"


async def executions(server: DevServer) -> list[Execution]:
    client = await Client.connect(server.address)
    described = await client.get_workflow_handle(workflow_id("app", "fake")).describe()
    return await histories(client, described.id, described.run_id)


def to_the_first_gate(run: Processes, s: Scenario) -> subprocess.Popen[bytes]:
    """`apply --engine temporal` started (the client process), once the run waits at its first gate."""
    client = run.start("apply", "apply", str(s.playbook), "-i", str(s.inventory), "--yes", "--engine", "temporal")
    until(lambda: waiting_gate(s, []) is not None or client.poll() is not None, 120)
    assert client.poll() is None, run.log("apply")
    return client


async def workflow_task_failures(server: DevServer, s: Scenario) -> list[str]:
    """The run's failed workflow tasks, as the server recorded them (cause and message)."""
    history = (
        await (await Client.connect(server.address)).get_workflow_handle(workflow_id("app", "fake")).fetch_history()
    )
    return [
        f"{WorkflowTaskFailedCause.Name(e.workflow_task_failed_event_attributes.cause)}: "
        f"{e.workflow_task_failed_event_attributes.failure.message[:120]}"
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]


async def answers(server: DevServer) -> bool:
    """Does the run answer a query (its workflow task is not failing)?"""
    try:
        await (await Client.connect(server.address)).get_workflow_handle(workflow_id("app", "fake")).query("progress")
    except RPCError:
        return False
    return True


@pytest.mark.reliability(
    "the control worker replaced mid-run by a build whose workflow code changed WITHOUT workflow.patched "
    "(a step added before the first record), while the run waits at a gate; then the previous build back",
    "the new build cannot replay the run: its workflow task fails (non-determinism), no record is written and "
    "promote is refused; with a compatible control worker back the run carries on and ends with exit 0",
)
def test_an_unpatched_change_stalls_the_run_until_a_compatible_worker_is_back(
    gated: Scenario, temporal_server: DevServer, record_property: Callable[[str, object], None]
) -> None:
    s = gated
    run = Processes(s, temporal_server)
    try:
        run.worker("control-v1", "--control")
        run.worker("ny-a", "--datacenter", "ny")
        run.worker("ch-a", "--datacenter", "ch")
        client = to_the_first_gate(run, s)
        at_gate = len(journal(s))
        gate = waiting_gate(s, [])
        assert gate is not None
        run.stop("control-v1")
        run.worker("control-bad", "--control", **{WORKFLOWS_ENV: f"tests.histories.altered:Unversioned,{CHILD}"})
        failures: list[str] = []
        until(lambda: bool(failures.extend(asyncio.run(workflow_task_failures(temporal_server, s))) or failures), 60)
        said = run.upgrader("promote", journal_run(s), "--reason", f"{gate} under the bad build")
        time.sleep(2.0)  # the bad build retries the task meanwhile
        stalled = len(journal(s)) - at_gate
        run.stop("control-bad")
        back = time.monotonic()
        run.worker("control-v1-again", "--control")
        until(lambda: asyncio.run(answers(temporal_server)), 120)  # its first task replays: the run answers again
        resumed = time.monotonic() - back
        promoted = promote_until_done(run, s, client)
        code = client.wait(timeout=10)
    finally:
        run.close()
    entries = journal(s)
    record_property(
        "observed",
        f"workflow task failed under the bad build: {failures[0]}; records written meanwhile: {stalled}; "
        f"promote meanwhile: exit {said.returncode} {said.stderr.strip()[:110]!r}; "
        f"with the previous build back the run answered in {resumed:.1f}s: gates {promoted}, apply exit {code}, "
        f"run {entries[-1].get('status')}",
    )
    assert stalled == 0 and said.returncode != 0
    assert failures and "NON_DETERMINISTIC" in failures[0]
    assert code == 0 and entries[-1]["status"] == "succeeded"


def journal_run(s: Scenario) -> str:
    return sorted((s.tmp / "state" / "runs").glob("*/journal.jsonl"))[-1].parent.name


def promote_until_done(
    run: Processes,
    s: Scenario,
    client: subprocess.Popen[bytes],
    promoted: list[str] | None = None,
    seconds: float = 180,
) -> list[str]:
    """`upgrader promote RUN` at each gate the run waits at, until the client exits; the gates promoted."""
    promoted = list(promoted or [])
    deadline = time.monotonic() + seconds
    while client.poll() is None:
        assert time.monotonic() < deadline, f"the run did not end within {seconds:g}s: {journal(s)[-3:]}"
        gate = waiting_gate(s, promoted)
        if gate is None:
            time.sleep(0.1)
            continue
        said = run.upgrader("promote", journal_run(s), "--reason", f"{gate} after the rolling upgrade")
        assert said.returncode == 0, said.stdout + said.stderr
        promoted.append(gate)
    return promoted


class _Replaying:
    """A run's handle while its control worker cannot replay it: queries fail on the worker, then answer."""

    id, run_id = "upgrade-app-inv", None

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.done = asyncio.Event()
        self._client = self  # watch asks the client for the run's (and its child's) handles

    def get_workflow_handle(self, wid: str, run_id: str | None = None) -> _Replaying:
        return self

    async def query(self, name: str, since: int = 0) -> dict[str, Any]:
        if self.failures:
            self.failures -= 1
            raise WorkflowQueryFailedError("[TMPRL1100] Nondeterminism error: Activity type does not match")
        self.done.set()
        return {"hosts": {"ny-1": ["done", "on 5.2.0", "ny"]}, "events": [], "cursor": 1, "more": False}

    async def result(self) -> dict[str, Any]:
        await self.done.wait()
        return {"exit_code": 0, "status": "succeeded", "message": "", "rows": []}


@pytest.mark.reliability(
    "`apply --engine temporal`/`watch` polls a run whose control worker cannot replay it (a query fails on the "
    "worker with a non-determinism error), then one that can",
    "the watch says so once and keeps waiting (no 'internal error' exit); it ends with the run's own outcome",
)
def test_a_watch_outlives_a_control_worker_that_cannot_answer(
    monkeypatch: pytest.MonkeyPatch, record_property: Callable[[str, object], None]
) -> None:
    from upgrader.engine.progress import Lines
    from upgrader.temporal import client as temporal

    out = io.StringIO()
    monkeypatch.setattr(temporal, "POLL", 0.01)
    outcome = asyncio.run(temporal.watch(_Replaying(failures=3), Lines("plain", stream=out)))  # type: ignore[arg-type]
    said = [line for line in out.getvalue().splitlines() if "cannot answer" in line]
    record_property(
        "observed", f"outcome {outcome['status']}; {len(said)} line(s) said: {said[0][:140] if said else ''}"
    )
    assert outcome["status"] == "succeeded" and len(said) == 1 and "Nondeterminism" in said[0]
