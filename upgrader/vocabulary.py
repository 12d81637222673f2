"""The one vocabulary of runs: host states, run outcomes and journal event names, and the events' payloads.

StrEnums, so a journal line holds the same strings as before (``json.dumps(HostState.DONE) == '"done"'``)
and older journals read the same; a misspelt name is an AttributeError where it is written, and
``Journal.record`` refuses an event name that is not here.  apply, rollback, resume, status,
admission and reporting all say these words through this module.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypedDict


class HostState(StrEnum):
    """Where one host is in a run (the engine's state, shown live and recorded at run-end)."""

    PENDING = "pending"
    STAGED = "staged"
    UNTOUCHED = "untouched"  # staged and removed again: nothing live changed
    UPGRADING = "upgrading"
    VERIFYING = "verifying"
    VERIFIED = "verified"  # on the target and verified; a canary then bakes
    BAKING = "baking"
    DONE = "done"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    HELD = "held"  # failed and left as it is for a human (rollback: hold)
    ROLLING_BACK = "rolling-back"
    ROLLED_BACK = "rolled-back"
    ROLLBACK_FAILED = "rollback-failed"
    HANDED_OVER = "handed-over"  # another run (an emergency rollback) took its lock
    # What resume reads from a killed run's journal (engine/resume.py), besides the states above:
    IN_FLIGHT = "in-flight"  # its program was sent and no answer was journaled
    UPGRADED = "upgraded"  # a canary on the target whose bake had not begun


ON_TARGET = frozenset({HostState.DONE, HostState.VERIFIED})  # live on the target, verified
UPGRADED = ON_TARGET | {HostState.BAKING}  # on the target: a canary baking too (what policy 'run' puts back)
NEEDS_A_HUMAN = frozenset({HostState.HELD, HostState.ROLLBACK_FAILED, HostState.UNREACHABLE})
FAILED = frozenset({HostState.FAILED, HostState.UNREACHABLE})


class RunStatus(StrEnum):
    """How a run ended (run-end's ``status``)."""

    SUCCEEDED = "succeeded"
    FAILED_ROLLED_BACK = "failed-rolled-back"
    STAGE_FAILED = "stage-failed"
    HALTED = "halted"
    ABORTED = "aborted"
    HELD = "held"
    ROLLBACK_FAILED = "rollback-failed"
    UNHEALTHY = "unhealthy"  # nothing the run changed is astray, but a host it left alone fails its checks
    REFUSED = "refused"  # refused before changing anything (locks, facts, artifacts)


class Event(StrEnum):
    """Journal event names: every record's ``event``."""

    RUN_START = "run-start"
    RUN_END = "run-end"
    RESUME = "resume"
    RECOVER = "recover"
    ARTIFACTS_CHECKED = "artifacts-checked"
    ARTIFACT_REFUSED = "artifact-refused"
    LOCK_BREAK = "lock-break"
    LOCKS = "locks"
    LOCKS_RELEASED = "locks-released"
    STAGE_BEGIN = "stage-begin"
    STAGE_HOST = "stage-host"
    STAGE_END = "stage-end"
    PHASE_BEGIN = "phase-begin"
    PHASE_END = "phase-end"
    HOST_BEGIN = "host-begin"
    HOST_END = "host-end"
    HOST_WITHHELD = "host-withheld"
    BAKE_BEGIN = "bake-begin"
    BAKE_END = "bake-end"
    TESTINFRA = "testinfra"
    GATE_WAIT = "gate-wait"
    GATE_END = "gate-end"
    ROLLBACK_BEGIN = "rollback-begin"
    ROLLBACK_END = "rollback-end"
    ROLLBACK_WITHHELD = "rollback-withheld"
    HALT = "halt"
    HOLD = "hold"
    ABORT = "abort"
    ABORT_KEPT = "abort-kept"  # an abort with --keep: the hosts it names stay on the new release
    ABORTED_RUNS = "aborted-runs"  # an emergency rollback aborted the runs it overrode


# ---------------------------------------------------------------- payloads


class HostSummary(TypedDict):
    """One host at run-end: its state, the line shown for it, and the version it is on (None: unknown)."""

    state: str
    detail: str
    version: str | None


class RunEnd(TypedDict):
    status: str
    exit_code: int
    message: str
    handshake_retries: int
    hosts: dict[str, HostSummary]
    resumable: bool  # halted part-way: `upgrader resume RUN` carries on (exit 5)


class HostEnd(TypedDict, total=False):
    """A host program's end: ``ok``; the agent's per-operation answers or the error that stopped it."""

    host: str
    ok: bool
    ops: list[dict[str, Any]]
    stderr: str
    error: str
    unreachable: bool


class RollbackEnd(TypedDict, total=False):
    host: str
    ok: bool
    ops: list[dict[str, Any]]
    error: str
    handed_over: bool
    version: str | None  # where the host is now: its starting version when ok, None when unknown
