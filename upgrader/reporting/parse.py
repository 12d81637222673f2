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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from upgrader.errors import InputError, Location, Problem, RefusedError
from upgrader.journal import JOURNAL, list_runs, read, run_directory
from upgrader.loading import bounded_read
from upgrader.loading.inputs import parse_json_object
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
PER_HOST = {Event.HOST_BEGIN, Event.HOST_END, Event.BAKE_BEGIN, Event.BAKE_END, Event.ROLLBACK_END}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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


def parse_run(run_id: str, entries: list[Entry], plan: dict[str, Any] | None = None) -> RunRecord:
    builder = _Builder(plan or {})
    for entry in entries:
        builder.feed(entry)
    return builder.record(run_id)


def when(entry: Entry) -> datetime:
    try:
        value = datetime.fromisoformat(str(entry.get("at")))
    except ValueError:
        return EPOCH
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def checks_of(op: Entry) -> tuple[Check, ...]:
    return tuple(
        Check(str(c.get("check", "?")), bool(c.get("ok")), c.get("reason"), int(c.get("attempts", 1)))
        for c in op.get("checks") or []
    )


def output_of(op: Entry, stderr: str = "") -> str:
    parts = [f"{k}: {op[k].strip()}" for k in ("stdout", "stderr") if isinstance(op.get(k), str) and op[k].strip()]
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
    start: Entry = field(default_factory=dict)
    end: Entry | None = None
    last: datetime | None = None
    hosts: dict[str, _Host] = field(default_factory=dict)
    timeline: list[Segment] = field(default_factory=list)
    phases: list[PhaseSpan] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    rollbacks: list[Rollback] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    stage_begin: Entry | None = None
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
    def feed(self, e: Entry) -> None:
        at = when(e)
        self.last = max(self.last, at) if self.last else at
        handler = getattr(self, "on_" + str(e.get("event", "")).replace("-", "_"), None)
        if handler is not None and (e.get("event") not in PER_HOST or isinstance(e.get("host"), str)):
            handler(e, at)
        if e.get("event") in NOTED:
            self.notes.append(Note(at, e["event"], describe_note(e)))

    def on_run_start(self, e: Entry, at: datetime) -> None:
        if not self.start:
            self.start = e
        for name in e.get("hosts") or []:
            self.host(name)

    def on_run_end(self, e: Entry, at: datetime) -> None:
        self.end = e
        for name, info in (e.get("hosts") or {}).items():
            h = self.host(name)
            h.state, h.detail = info.get("state", h.state), info.get("detail", "")
            if "version" in info:  # rollback runs say where each host ended (None: unknown)
                h.version = info["version"]
            elif h.state == State.UNREACHABLE:
                h.version = None
            elif h.state == State.DONE:  # journals from before run-end said the version: the plan's data
                h.version = h.target or h.version
            elif h.state == State.ROLLED_BACK:
                h.version = h.from_version
        for phase in self.phases:
            if phase.end is None:
                self.close_phase(phase.index, at)

    def on_stage_begin(self, e: Entry, at: datetime) -> None:
        self.stage_begin = e

    def on_stage_end(self, e: Entry, at: datetime) -> None:
        begin = self.stage_begin or e
        failed = e.get("failed") or {}
        for name in begin.get("hosts") or []:
            error = failed.get(name)
            self.timeline.append(
                Segment(
                    name, "stage", "stage", None, when(begin), (at - when(begin)).total_seconds(), error is None, error
                )
            )
            if error is not None:
                self.failures.append(Failure(name, at, "stage", "stage", None, str(error)))

    def on_phase_begin(self, e: Entry, at: datetime) -> None:
        self.phases.append(
            PhaseSpan(
                int(e.get("phase", len(self.phases))),
                str(e.get("kind", "")),
                e.get("datacenter"),
                tuple(e.get("hosts") or []),
                at,
                None,
            )
        )

    def on_phase_end(self, e: Entry, at: datetime) -> None:
        self.close_phase(int(e.get("phase", -1)), at)

    def close_phase(self, index: int, at: datetime) -> None:
        self.phases = [
            PhaseSpan(p.index, p.kind, p.datacenter, p.hosts, p.start, at) if p.index == index and p.end is None else p
            for p in self.phases
        ]

    def on_host_begin(self, e: Entry, at: datetime) -> None:
        self.host(e["host"]).began = at

    def on_host_end(self, e: Entry, at: datetime) -> None:
        h = self.host(e["host"])
        begin, h.began = h.began or at, None
        during = "rollback" if self.start.get("kind") == "rollback" else "upgrade"
        self.ops(h, e, begin, at, during)

    def on_bake_begin(self, e: Entry, at: datetime) -> None:
        self.bake_begin[e["host"]] = at

    def on_bake_end(self, e: Entry, at: datetime) -> None:
        h = self.host(e["host"])
        self.ops(h, e, self.bake_begin.pop(h.name, at), at, "bake", fallback="bake")

    def on_rollback_begin(self, e: Entry, at: datetime) -> None:
        self.rollback_begin = at

    def on_rollback_end(self, e: Entry, at: datetime) -> None:
        h = self.host(e["host"])
        self.ops(h, e, self.rollback_begin or at, at, "rollback", fallback="rollback")

    # ------------------------------------------------------------ agent results
    def ops(self, h: _Host, e: Entry, begin: datetime, end: datetime, during: str, fallback: str = "agent") -> None:
        ops: list[Entry] = e.get("ops") or []
        cursor = begin
        for op in ops:
            seconds = float(op.get("seconds") or 0.0)
            name = str(op.get("op", "?"))
            self.timeline.append(
                Segment(
                    h.name,
                    CATEGORY.get(name, "other"),
                    name,
                    op.get("step"),
                    cursor,
                    seconds,
                    bool(op.get("ok")),
                    op.get("error"),
                )
            )
            cursor += timedelta(seconds=seconds)
            self.learn_version(h, op, e)
            if not op.get("ok"):
                self.failures.append(
                    Failure(
                        h.name,
                        end,
                        during,
                        name,
                        op.get("step"),
                        str(op.get("error")),
                        checks_of(op),
                        output_of(op, e.get("stderr") or ""),
                    )
                )
        if not ops and not e.get("ok"):
            error = str(e.get("error") or "no result from the agent")
            category = fallback if fallback != "agent" else "other"
            self.timeline.append(
                Segment(h.name, category, fallback, None, begin, (end - begin).total_seconds(), False, error)
            )
            self.failures.append(Failure(h.name, end, during, None, None, error, (), e.get("stderr") or ""))
            if e.get("unreachable"):
                h.version = None
        elif e.get("ok") is False and all(op.get("ok") for op in ops):
            # Every op it returned succeeded, yet the program failed: it died or timed out mid-way.
            self.failures.append(
                Failure(
                    h.name, end, during, None, None, str(e.get("error") or "agent failed"), (), e.get("stderr") or ""
                )
            )
        if during == "rollback" and (ops or e.get("error")):
            self.rollbacks.append(rollback_of(h.name, end, e))

    def learn_version(self, h: _Host, op: Entry, e: Entry) -> None:
        """Follow the symlink: switch and rollback say which release is current afterwards."""
        if op.get("op") == "switch" and op.get("ok"):
            h.version = op.get("current") or h.version
        elif op.get("op") == "rollback":
            h.version = (op.get("to") if op.get("ok") else op.get("current")) or h.version
            h.from_version = h.from_version or op.get("from")

    # ------------------------------------------------------------ result
    def record(self, run_id: str) -> RunRecord:
        s, end = self.start, self.end or {}
        return RunRecord(
            run_id=run_id,
            kind=str(s.get("kind", "?")),
            component=str(s.get("component", "?")),
            version=s.get("version") if s.get("kind") == "apply" else s.get("to"),
            operator=str(s.get("operator", "?")),
            reason=s.get("reason"),
            argv=tuple(s.get("argv") or ()),
            plan_hash=s.get("plan_hash") or self.plan.get("content_hash"),
            break_lock=s.get("break_lock"),
            started=when(s) if s else None,
            ended=when(end) if self.end else None,
            status=str(end.get("status", "unfinished")) if self.end else "unfinished",
            exit_code=end.get("exit_code"),
            message=str(end.get("message", "")),
            hosts=tuple(self.host_state(h) for h in self.hosts.values()),
            timeline=tuple(self.timeline),
            phases=tuple(self.phases),
            failures=tuple(self.failures),
            rollbacks=tuple(self.rollbacks),
            notes=tuple(self.notes),
        )

    def host_state(self, h: _Host) -> HostState:
        seconds = sum(seg.seconds for seg in self.timeline if seg.host == h.name and seg.category != "stage")
        return HostState(h.name, h.datacenter, h.from_version, h.state, h.detail, h.version, round(seconds, 3))


def rollback_of(host: str, at: datetime, e: Entry) -> Rollback:
    op: dict[str, Any] = next((o for o in e.get("ops") or [] if o.get("op") == "rollback"), {})
    return Rollback(
        host,
        at,
        bool(e.get("ok")),
        op.get("from"),
        op.get("to") or op.get("current"),
        tuple(op.get("steps") or ()),
        None if e.get("ok") else str(e.get("error") or op.get("error")),
    )


def describe_note(e: Entry) -> str:
    ev = e.get("event")
    if ev == Event.HALT:
        how = (
            (f" ({e['signal']}{', at once' if e.get('hard') else ''}{', resumable' if e.get('resumable') else ''})")
            if e.get("signal")
            else ""
        )
        return str(e.get("reason", "halted")) + how
    if ev == Event.GATE_END:
        d = e.get("decision") or {}
        by = f" by {d.get('operator')}" + (f": {d['reason']}" if d.get("reason") else "") if d else ""
        ahead = f" — approved ahead at {d.get('at')}, before the run reached the gate" if d.get("ahead") else ""
        return f"gate {e.get('gate')} {e.get('outcome')}{by} after {e.get('waited')} s{ahead}"
    if ev == Event.ABORT:
        return f"aborted by {e.get('operator')}: {e.get('reason')}" + (" (--keep)" if e.get("keep") else "")
    if ev == Event.ABORT_KEPT:
        return f"abort --keep: left on the new release: {', '.join(e.get('hosts') or []) or 'none'}"
    if ev == Event.HOLD:
        return f"held for a human: {', '.join(e.get('hosts') or [])}"
    if ev == Event.LOCK_BREAK:
        return f"host locks broken by {e.get('operator', '?')}: {e.get('reason', '')}"
    if ev == Event.RECOVER:
        return f"resume: rolling back hosts caught mid-step: {', '.join(e.get('hosts') or [])}"
    if ev == Event.ARTIFACT_REFUSED:
        return f"artifact {e.get('path')} refused: sha256 {e.get('sha256')}, expected {e.get('expected')}"
    rest = {k: v for k, v in e.items() if k not in ("seq", "at", "event")}
    return f"{ev} {json.dumps(rest, sort_keys=True, default=str)}" if rest else str(ev)
