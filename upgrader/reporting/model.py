"""What a run did, as frozen data: read from its journal by ``parse``, drawn by the renderers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from upgrader.vocabulary import HostState as State  # reporting has a HostState of its own

# Timeline categories, in legend order.  Agent ops map onto them in ``parse.CATEGORY``.
CATEGORIES = ("stage", "lock", "precheck", "stop", "switch", "migrate", "start", "verify", "bake", "rollback", "other")

# Host end states → the outcome buckets people (and Prometheus) count; None: nothing happened to it.
OUTCOMES = ("upgraded", "failed", "rolled_back", "rollback_failed")
_OUTCOME: dict[str, str] = {
    State.DONE: "upgraded",
    State.ROLLED_BACK: "rolled_back",
    State.ROLLBACK_FAILED: "rollback_failed",
    State.FAILED: "failed",
    State.UNREACHABLE: "failed",
    State.HELD: "failed",
    State.HANDED_OVER: "failed",
}


def outcome(state: str) -> str | None:
    return _OUTCOME.get(state)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    reason: str | None
    attempts: int


@dataclass(frozen=True)
class Segment:
    """One bar of the timeline: an agent op (or a stage/bake/rollback span) on one host."""

    host: str
    category: str
    op: str
    step: str | None
    start: datetime
    seconds: float
    ok: bool
    error: str | None = None

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.seconds)


@dataclass(frozen=True)
class Failure:
    """A failed op (or an unreachable host), with the checks and output that explain it."""

    host: str
    at: datetime
    during: str  # stage | upgrade | bake | rollback
    op: str | None
    step: str | None
    error: str
    checks: tuple[Check, ...] = ()
    output: str = ""

    @property
    def failed_checks(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok)


@dataclass(frozen=True)
class Rollback:
    host: str
    at: datetime
    ok: bool
    from_version: str | None
    to_version: str | None
    steps: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class HostState:
    host: str
    datacenter: str | None
    from_version: str | None
    state: str
    detail: str
    version: str | None  # where the host ended, as far as the journal knows
    seconds: float  # time spent in its steps (ops, bake, rollback)

    @property
    def outcome(self) -> str | None:
        return outcome(self.state)


@dataclass(frozen=True)
class PhaseSpan:
    index: int
    kind: str
    datacenter: str | None
    hosts: tuple[str, ...]
    start: datetime
    end: datetime | None


@dataclass(frozen=True)
class Note:
    """Something a reader must not miss: halts, holds, lock breaks, recoveries, resumes."""

    at: datetime
    event: str
    text: str


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    kind: str  # apply | rollback
    component: str
    version: str | None  # the target (apply) or --to (rollback; None: each host's previous release)
    operator: str
    reason: str | None
    argv: tuple[str, ...]
    plan_hash: str | None
    break_lock: str | None
    started: datetime | None
    ended: datetime | None
    status: str  # from run-end; "unfinished" when there is none
    exit_code: int | None
    message: str
    hosts: tuple[HostState, ...]
    timeline: tuple[Segment, ...]
    phases: tuple[PhaseSpan, ...]
    failures: tuple[Failure, ...]
    rollbacks: tuple[Rollback, ...]
    notes: tuple[Note, ...]

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return (self.ended - self.started).total_seconds()

    @property
    def finished(self) -> bool:
        return self.status != "unfinished"

    def counts(self) -> dict[str, int]:
        """Hosts per outcome bucket, every bucket present."""
        out = dict.fromkeys(OUTCOMES, 0)
        for h in self.hosts:
            if h.outcome:
                out[h.outcome] += 1
        return out

    def segments(self, host: str) -> tuple[Segment, ...]:
        return tuple(s for s in self.timeline if s.host == host)
