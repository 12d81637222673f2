"""Reading a run's journal (and its plan.json) into a ``RunRecord``: pure, tolerant of unfinished runs.

Agent results carry each op's duration on the host but not its start time, so
op timing is derived: an op starts when the ops before it in the same program
have ended, counted from the journal's ``host-begin`` (or ``bake-begin``,
``rollback-begin``) timestamp.  SSH connection time therefore sits after the
last op, never inside one.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from upgrader import records
from upgrader.errors import InputError, Location, Problem, RefusedError
from upgrader.journal import JOURNAL, list_runs, read, run_directory
from upgrader.loading import bounded_read
from upgrader.loading.inputs import parse_json_object
from upgrader.records import (
    Abort,
    AbortKept,
    ArtifactRefused,
    BakeBegin,
    BakeEnd,
    GateEnd,
    Halt,
    Hold,
    HostBegin,
    HostEnd,
    HostResultRecord,
    LockBreak,
    Op,
    PhaseBegin,
    PhaseEnd,
    Record,
    Recover,
    RollbackBegin,
    RollbackEnd,
    RunEnd,
    RunStart,
    StageBegin,
    StageEnd,
)
from upgrader.reporting.model import (
    Check,
    Failure,
    HostState,
    Note,
    PhaseSpan,
    Rollback,
    RunRecord,
    Segment,
)
from upgrader.vocabulary import Event
from upgrader.vocabulary import HostState as State  # reporting has a HostState of its own

Entry = dict[str, Any]

CATEGORY = {
    "lock": "lock",
    "stage": "stage",
    "precheck": "precheck",
    "stop": "stop",
    "switch": "switch",
    "carry_over": "switch",
    "migrate": "migrate",
    "start": "start",
    "verify": "verify",
    "bake": "bake",
    "rollback": "rollback",
}
NOTED = {
    Event.HALT,
    Event.HOLD,
    Event.LOCK_BREAK,
    Event.RECOVER,
    Event.RESUME,
    Event.ARTIFACT_REFUSED,
    Event.GATE_END,
    Event.ABORT,
    Event.ABORT_KEPT,
}
log = logging.getLogger(__name__)


def load_run(state_dir: Path, run_id: str) -> RunRecord:
    """One run, read from its journal (and plan.json, for apply runs); InputError names a damaged file."""
    directory = run_directory(state_dir, run_id)
    entries = list(read(directory / JOURNAL))
    return parse_run(run_id, entries, _read_plan(directory / "plan.json"))


def load_runs(state_dir: Path) -> list[RunRecord]:
    """Every recorded run whose files can be read, oldest first (run ids begin with their UTC start time).

    A damaged run is left out (logged), so one bad journal does not hide the others' metrics.
    """
    records = []
    for summary in list_runs(state_dir):
        try:
            records.append(load_run(state_dir, summary.run_id))
        except (InputError, RefusedError) as exc:
            log.warning("run %s left out: %s", summary.run_id, exc)
    return records


def _read_plan(path: Path) -> dict[str, Any] | None:
    """The run's plan as JSON data: absent for rollback runs; a damaged one is an InputError naming it."""
    if not os.path.lexists(path):
        return None
    plan = parse_json_object(bounded_read.read_text(path, "plan"), str(path))
    hosts = plan.get("hosts", [])
    if not isinstance(hosts, list) or not all(
        isinstance(h, dict)
        and isinstance(h.get("host"), str)
        and all(isinstance(h.get(k), str | None) for k in ("datacenter", "from_version"))
        for h in hosts
    ):
        raise InputError(
            [
                Problem(
                    Location(str(path)),
                    "plan 'hosts' must be a list of host plans",
                    "the run's plan.json was edited; the journal alone cannot say which hosts it had",
                )
            ]
        )
    if not isinstance(plan.get("content_hash"), str | None):
        raise InputError(
            [Problem(Location(str(path)), "plan 'content_hash' must be a string", "the run's plan.json was edited")]
        )
    return plan


def parse_run(run_id: str, entries: Iterable[Record | Entry], plan: dict[str, Any] | None = None) -> RunRecord:
    builder = _Builder(plan or {})
    for entry in records.typed(entries):
        builder.feed(entry)
    return builder.record(run_id)


def checks_of(op: Op) -> tuple[Check, ...]:
    return tuple(Check(c.check, c.ok, c.reason, c.attempts) for c in op.checks)


def output_of(op: Op, stderr: str = "") -> str:
    parts = [
        f"{k}: {text.strip()}" for k, text in (("stdout", op.stdout), ("stderr", op.stderr)) if text and text.strip()
    ]
    if stderr.strip():
        parts.append(f"agent stderr: {stderr.strip()}")
    return "\n".join(parts)


@dataclass
class _Host:
    name: str
    datacenter: str | None = None
    from_version: str | None = None
    version: str | None = None
    state: str = State.PENDING
    target: str | None = None  # the plan's last hop for it
    detail: str = ""
    began: datetime | None = None


@dataclass
class _Builder:
    plan: dict[str, Any]
    start: RunStart | None = None
    end: RunEnd | None = None
    last: datetime | None = None
    hosts: dict[str, _Host] = field(default_factory=dict)
    timeline: list[Segment] = field(default_factory=list)
    phases: list[PhaseSpan] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    rollbacks: list[Rollback] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    stage_begin: StageBegin | None = None
    bake_begin: dict[str, datetime] = field(default_factory=dict)
    rollback_begin: datetime | None = None

    def __post_init__(self) -> None:
        for h in self.plan.get("hosts", []):
            self.hosts[h["host"]] = _Host(
                h["host"],
                h.get("datacenter"),
                h.get("from_version"),
                h.get("from_version"),
                target=(h.get("path") or [None])[-1],
            )

    def host(self, name: str) -> _Host:
        return self.hosts.setdefault(name, _Host(name))

    # ------------------------------------------------------------ events
    def feed(self, e: Record) -> None:
        at = e.at
        self.last = max(self.last, at) if self.last else at
        if isinstance(e.event, Event):  # an event this version does not know (Other) changes nothing
            handler = HANDLERS[e.event]
            if handler is not None:
                handler(self, e, at)
            if e.event in NOTED:
                self.notes.append(Note(at, e.event, describe_note(e)))

    def on_run_start(self, e: RunStart, at: datetime) -> None:
        if self.start is None:
            self.start = e
        for name in e.hosts:
            self.host(name)

    def on_run_end(self, e: RunEnd, at: datetime) -> None:
        self.end = e
        for name, info in e.hosts.items():
            h = self.host(name)
            h.state, h.detail = info.state, info.detail
            if info.says_version:  # rollback runs say where each host ended (None: unknown)
                h.version = info.version
            elif h.state == State.UNREACHABLE:
                h.version = None
            elif h.state == State.DONE:  # journals from before run-end said the version: the plan's data
                h.version = h.target or h.version
            elif h.state == State.ROLLED_BACK:
                h.version = h.from_version
        for phase in self.phases:
            if phase.end is None:
                self.close_phase(phase.index, at)

    def on_stage_begin(self, e: StageBegin, at: datetime) -> None:
        self.stage_begin = e

    def on_stage_end(self, e: StageEnd, at: datetime) -> None:
        began = self.stage_begin.at if self.stage_begin else at
        for name in self.stage_begin.hosts if self.stage_begin else ():
            error = e.failed.get(name)
            self.timeline.append(
                Segment(name, "stage", "stage", None, began, (at - began).total_seconds(), error is None, error)
            )
            if error is not None:
                self.failures.append(Failure(name, at, "stage", "stage", None, str(error)))

    def on_phase_begin(self, e: PhaseBegin, at: datetime) -> None:
        index = e.phase if e.phase is not None else len(self.phases)
        self.phases.append(PhaseSpan(index, e.kind, e.datacenter, e.hosts, at, None))

    def on_phase_end(self, e: PhaseEnd, at: datetime) -> None:
        self.close_phase(e.phase if e.phase is not None else -1, at)

    def close_phase(self, index: int, at: datetime) -> None:
        self.phases = [
            PhaseSpan(p.index, p.kind, p.datacenter, p.hosts, p.start, at) if p.index == index and p.end is None else p
            for p in self.phases
        ]

    def on_host_begin(self, e: HostBegin, at: datetime) -> None:
        self.host(e.host).began = at

    def on_host_end(self, e: HostEnd, at: datetime) -> None:
        h = self.host(e.host)
        begin, h.began = h.began or at, None
        during = "rollback" if self.start is not None and self.start.kind == "rollback" else "upgrade"
        self.ops(h, e, begin, at, during)

    def on_bake_begin(self, e: BakeBegin, at: datetime) -> None:
        self.bake_begin[e.host] = at

    def on_bake_end(self, e: BakeEnd, at: datetime) -> None:
        h = self.host(e.host)
        self.ops(h, e, self.bake_begin.pop(h.name, at), at, "bake", fallback="bake")

    def on_rollback_begin(self, e: RollbackBegin, at: datetime) -> None:
        self.rollback_begin = at

    def on_rollback_end(self, e: RollbackEnd, at: datetime) -> None:
        h = self.host(e.host)
        self.ops(h, e, self.rollback_begin or at, at, "rollback", fallback="rollback")

    # ------------------------------------------------------------ agent results
    def ops(
        self, h: _Host, e: HostResultRecord, begin: datetime, end: datetime, during: str, fallback: str = "agent"
    ) -> None:
        cursor = begin
        for op in e.ops:
            self.timeline.append(
                Segment(h.name, CATEGORY.get(op.op, "other"), op.op, op.step, cursor, op.seconds, op.ok, op.error)
            )
            cursor += timedelta(seconds=op.seconds)
            self.learn_version(h, op)
            if not op.ok:
                failure = Failure(
                    h.name, end, during, op.op, op.step, str(op.error), checks_of(op), output_of(op, e.stderr)
                )
                self.failures.append(failure)
        if not e.ops and not e.ok:
            error = e.error or "no result from the agent"
            category = fallback if fallback != "agent" else "other"
            self.timeline.append(
                Segment(h.name, category, fallback, None, begin, (end - begin).total_seconds(), False, error)
            )
            self.failures.append(Failure(h.name, end, during, None, None, error, (), e.stderr))
            if isinstance(e, HostEnd) and e.unreachable:
                h.version = None
        elif not e.ok and all(op.ok for op in e.ops):
            # Every op it returned succeeded, yet the program failed: it died or timed out mid-way.
            self.failures.append(Failure(h.name, end, during, None, None, e.error or "agent failed", (), e.stderr))
        if during == "rollback" and (e.ops or e.error):
            self.rollbacks.append(rollback_of(h.name, end, e))

    def learn_version(self, h: _Host, op: Op) -> None:
        """Follow the symlink: switch and rollback say which release is current afterwards."""
        if op.op == "switch" and op.ok:
            h.version = op.current or h.version
        elif op.op == "rollback":
            h.version = (op.to if op.ok else op.current) or h.version
            h.from_version = h.from_version or op.from_

    # ------------------------------------------------------------ result
    def record(self, run_id: str) -> RunRecord:
        s, end = self.start, self.end
        seconds: dict[str, float] = {}  # on each host, staging aside: one pass (per host, it was quadratic)
        for seg in self.timeline:
            if seg.category != "stage":
                seconds[seg.host] = seconds.get(seg.host, 0.0) + seg.seconds
        return RunRecord(
            run_id=run_id,
            kind=s.kind if s else "?",
            component=s.component if s else "?",
            version=(s.version if s.kind == "apply" else s.to) if s else None,
            operator=s.operator if s else "?",
            reason=s.reason if s else None,
            argv=s.argv if s else (),
            plan_hash=(s.plan_hash if s else None) or self.plan.get("content_hash"),
            break_lock=s.break_lock if s else None,
            started=s.at if s else None,
            ended=end.at if end else None,
            status=end.status if end else "unfinished",
            exit_code=end.exit_code if end else None,
            message=end.message if end else "",
            hosts=tuple(self.host_state(h, seconds.get(h.name, 0.0)) for h in self.hosts.values()),
            timeline=tuple(self.timeline),
            phases=tuple(self.phases),
            failures=tuple(self.failures),
            rollbacks=tuple(self.rollbacks),
            notes=tuple(self.notes),
        )

    def host_state(self, h: _Host, seconds: float) -> HostState:
        return HostState(h.name, h.datacenter, h.from_version, h.state, h.detail, h.version, round(seconds, 3))


# What each event does to the report: every Event has an entry (tests/unit/test_records.py checks), so a
# renamed or added event is a KeyError here or a failing test, never a silently dropped handler.  None:
# the event changes nothing but, if it is NOTED, the report's notes.
HANDLERS: dict[Event, Callable[[_Builder, Any, datetime], None] | None] = {
    Event.RUN_START: _Builder.on_run_start,
    Event.RUN_END: _Builder.on_run_end,
    Event.RESUME: None,
    Event.RECOVER: None,
    Event.ARTIFACTS_CHECKED: None,
    Event.ARTIFACT_REFUSED: None,
    Event.LOCK_BREAK: None,
    Event.LOCKS: None,
    Event.LOCKS_RELEASED: None,
    Event.STAGE_BEGIN: _Builder.on_stage_begin,
    Event.STAGE_HOST: None,
    Event.STAGE_END: _Builder.on_stage_end,
    Event.PHASE_BEGIN: _Builder.on_phase_begin,
    Event.PHASE_END: _Builder.on_phase_end,
    Event.HOST_BEGIN: _Builder.on_host_begin,
    Event.HOST_END: _Builder.on_host_end,
    Event.HOST_WITHHELD: None,
    Event.BAKE_BEGIN: _Builder.on_bake_begin,
    Event.BAKE_END: _Builder.on_bake_end,
    Event.TESTINFRA: None,
    Event.GATE_WAIT: None,
    Event.GATE_END: None,
    Event.ROLLBACK_BEGIN: _Builder.on_rollback_begin,
    Event.ROLLBACK_END: _Builder.on_rollback_end,
    Event.ROLLBACK_WITHHELD: None,
    Event.HALT: None,
    Event.HOLD: None,
    Event.ABORT: None,
    Event.ABORT_KEPT: None,
    Event.ABORTED_RUNS: None,
}


def rollback_of(host: str, at: datetime, e: HostResultRecord) -> Rollback:
    op = next((o for o in e.ops if o.op == "rollback"), Op())
    return Rollback(
        host,
        at,
        e.ok,
        op.from_,
        op.to or op.current,
        op.steps,
        None if e.ok else str(e.error or op.error),
    )


def describe_note(e: Record) -> str:
    match e:
        case Halt():
            how = (
                f" ({e.signal}{', at once' if e.hard else ''}{', resumable' if e.resumable else ''})"
                if e.signal
                else ""
            )
            return e.reason + how
        case GateEnd():
            d = e.decision or {}
            by = f" by {d.get('operator')}" + (f": {d['reason']}" if d.get("reason") else "") if d else ""
            ahead = f" — approved ahead at {d.get('at')}, before the run reached the gate" if d.get("ahead") else ""
            return f"gate {e.gate} {e.outcome}{by} after {e.waited} s{ahead}"
        case Abort():
            return f"aborted by {e.operator}: {e.reason}" + (" (--keep)" if e.keep else "")
        case AbortKept():
            return f"abort --keep: left on the new release: {', '.join(e.hosts) or 'none'}"
        case Hold():
            return f"held for a human: {', '.join(e.hosts)}"
        case LockBreak():
            return f"host locks broken by {e.operator}: {e.reason or ''}"
        case Recover():
            return f"resume: rolling back hosts caught mid-step: {', '.join(e.hosts)}"
        case ArtifactRefused():
            return f"artifact {e.path} refused: sha256 {e.sha256}, expected {e.expected}"
    rest = {k: v for k, v in e.fields.items() if k not in ("seq", "at", "event")}
    return f"{e.event} {json.dumps(rest, sort_keys=True, default=str)}" if rest else str(e.event)
