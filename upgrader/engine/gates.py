"""Manual judgment: a run waits at a gate until someone promotes it, aborts it, or the gate times out.

Decisions arrive as files in the run's directory (``decisions/``), written by `upgrader promote` and
`upgrader abort` from another terminal or by another operator; the waiting process polls for them
between rounds of the canary's checks, so a canary that degrades while it waits is still caught.
A decision is a value (``Decision``) that the durable engine can carry as a workflow signal as well.

Each decision file is created once (O_EXCL) under a name that says what it is; a promote names the
gate it was meant for, so a late promote for the canary gate cannot wave a run past the next
datacenter's gate.  A promote counts only at the gate the run was waiting at when it was written
(``at`` no earlier than the wait began), unless it is an explicit pre-approval (``ahead``, from
`promote --ahead`): a promote for a later gate is refused by the command, and one written some other
way is ignored by the run.  An abort stands for the whole run, from the moment it is written; with
``keep`` the hosts already on the new release stay there.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from upgrader.errors import RefusedError
from upgrader.journal import JOURNAL

DECISIONS = "decisions"
POLL = 0.5  # seconds between looks at the decisions directory while a gate waits
MAX_DECISION_BYTES = 4096  # a decision is a few fields; anything bigger was not written by us


class DecisionKind(StrEnum):
    PROMOTE = "promote"
    ABORT = "abort"


class GateOutcome(StrEnum):
    """How a wait at a gate ended."""

    PROMOTED = "promoted"
    ABORTED = "aborted"
    TIMED_OUT = "timed-out"
    DEGRADED = "degraded"  # the canary's checks failed while it waited
    STOPPED = "stopped"  # the run itself stopped waiting (SIGTERM)


@dataclass(frozen=True)
class Decision:
    kind: DecisionKind
    gate: str | None  # the gate a promote is for; None for an abort (the whole run)
    operator: str
    reason: str
    at: str
    ahead: bool = False  # a promote written before the run reached its gate (`promote --ahead`)
    keep: bool = False  # an abort that leaves hosts on the new release (`abort --keep`)

    def to_dict(self) -> dict[str, str | bool | None]:
        return {
            "kind": str(self.kind),
            "gate": self.gate,
            "operator": self.operator,
            "reason": self.reason,
            "at": self.at,
            "ahead": self.ahead,
            "keep": self.keep,
        }

    @classmethod
    def from_dict(cls, data: object) -> Decision | None:
        """A decision read back from a file, or None when it is not one of ours."""
        if not isinstance(data, dict):
            return None
        try:
            kind = DecisionKind(str(data.get("kind")))
        except ValueError:
            return None
        gate, operator, reason, at = (data.get("gate"), data.get("operator"), data.get("reason"), data.get("at"))
        if not isinstance(operator, str) or not isinstance(reason, str) or not isinstance(at, str):
            return None
        if not isinstance(gate, str | None):
            return None
        ahead, keep = data.get("ahead", False), data.get("keep", False)
        if not isinstance(ahead, bool) or not isinstance(keep, bool):
            return None
        return cls(
            kind,
            gate,
            operator,
            reason,
            at,
            ahead=ahead and kind is DecisionKind.PROMOTE,
            keep=keep and kind is DecisionKind.ABORT,
        )


@dataclass(frozen=True)
class GateResult:
    outcome: GateOutcome
    decision: Decision | None
    waited: float
    detail: str = ""


def now() -> str:
    """The wall-clock time decisions and gate waits are compared by (UTC, milliseconds: sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def request(
    run_dir: Path,
    kind: DecisionKind,
    *,
    gate: str | None,
    operator: str,
    reason: str,
    ahead: bool = False,
    keep: bool = False,
) -> Decision:
    """Record a decision for the run in ``run_dir`` (an existing run directory)."""
    if not (run_dir / JOURNAL).is_file():
        raise RefusedError(f"{run_dir} is not a run directory", "list runs with `upgrader runs`")
    directory = run_dir / DECISIONS
    directory.mkdir(mode=0o700, exist_ok=True)
    promote = kind is DecisionKind.PROMOTE
    decision = Decision(
        kind, gate if promote else None, operator, reason, now(), ahead=ahead and promote, keep=keep and not promote
    )
    # The name orders decisions by time and can neither collide nor be guessed and pre-planted as a symlink.
    name = f"{time.time_ns():020d}-{kind}-{secrets.token_hex(4)}.json"
    fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(decision.to_dict(), fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    return decision


def decisions(run_dir: Path) -> list[Decision]:
    """Every well-formed decision for the run, oldest first; anything else in the directory is ignored."""
    directory = run_dir / DECISIONS
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
    except OSError:
        return []
    out = []
    for name in names:
        try:
            fd = os.open(directory / name, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read(MAX_DECISION_BYTES + 1)
        if len(raw) > MAX_DECISION_BYTES:
            continue
        try:
            found = Decision.from_dict(json.loads(raw))
        except ValueError:
            continue
        if found is not None:
            out.append(found)
    return out


def counts_at(decision: Decision, gate: str, since: str | None) -> bool:
    """Does ``decision`` promote ``gate``, whose wait began at ``since``?  Only if written while the run
    waited there, or as an explicit pre-approval (``ahead``)."""
    return (
        decision.kind is DecisionKind.PROMOTE
        and decision.gate == gate
        and (decision.ahead or since is None or decision.at >= since)
    )


def pending(run_dir: Path, gate: str, since: str | None = None) -> Decision | None:
    """The decision that ends a wait at ``gate`` (begun at ``since``): any abort, else a promote that counts."""
    found = decisions(run_dir)
    abort = next((d for d in found if d.kind is DecisionKind.ABORT), None)
    return abort or next((d for d in found if counts_at(d, gate, since)), None)


def aborted(run_dir: Path) -> Decision | None:
    return next((d for d in decisions(run_dir) if d.kind is DecisionKind.ABORT), None)


def wait(
    run_dir: Path,
    gate: str,
    *,
    timeout: float,
    healthy: Callable[[], str | None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    poll: float = POLL,
    stopped: Callable[[], bool] = lambda: False,
    since: str | None = None,
    tick: Callable[[float], None] = lambda _left: None,
) -> GateResult:
    """Wait at ``gate`` for a decision, at most ``timeout`` seconds.

    ``healthy()`` runs one round of the canary's checks and returns None or why they failed; it is
    called between looks at the decisions, and a failure ends the wait as DEGRADED.  ``since`` is when
    the wait began (``now()``): promotes written before it count only if ``ahead``.  ``tick(left)`` is
    called at each look (for a heartbeat).
    """
    started = clock()
    while True:
        found = pending(run_dir, gate, since)
        waited = clock() - started
        tick(max(0.0, timeout - waited))
        if found is not None:
            outcome = GateOutcome.ABORTED if found.kind is DecisionKind.ABORT else GateOutcome.PROMOTED
            return GateResult(outcome, found, waited)
        if stopped():
            return GateResult(GateOutcome.STOPPED, None, waited)
        if waited >= timeout:
            return GateResult(GateOutcome.TIMED_OUT, None, waited)
        problem = healthy()
        if problem is not None:
            return GateResult(GateOutcome.DEGRADED, None, clock() - started, problem)
        sleep(min(poll, max(0.0, timeout - (clock() - started))))
