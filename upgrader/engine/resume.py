"""Reading a killed or halted run's journal: which hosts finished, which were caught mid-step.

A run halted by a signal or a closed window ends with a ``run-end`` that says ``resumable``; its halt
and its put-back of cut canaries (``rollback-begin`` with ``failing: false``) are not failures, so
resume carries on with the plan.  An abort is: resume finishes putting back what the run changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from upgrader import records
from upgrader.engine.policy_state import Recovery
from upgrader.models.plan import Plan
from upgrader.records import (
    Abort,
    AbortKept,
    BakeBegin,
    BakeEnd,
    Halt,
    Hold,
    HostBegin,
    HostEnd,
    Record,
    Resume,
    RollbackBegin,
    RollbackEnd,
    RunEnd,
)
from upgrader.vocabulary import HostState

# Hosts resume puts back where they began: caught mid-step, failed, or in a rollback that did not end well.
_BACK = frozenset(
    {
        HostState.IN_FLIGHT,
        HostState.UPGRADED,
        HostState.BAKING,
        HostState.FAILED,
        HostState.ROLLING_BACK,
        HostState.ROLLBACK_FAILED,
    }
)


def analyze(entries: Iterable[Record | Mapping[str, Any]], plan: Plan) -> Recovery:
    """Replay the journal: the last word about each host decides what resume must do with it."""
    state: dict[str, HostState] = {}
    failing = aborted = keep = False
    failures = 0
    canary = {h.host for h in plan.hosts if h.canary}
    for e in records.typed(entries):
        match e:
            case HostBegin():
                state[e.host] = HostState.IN_FLIGHT
            case HostEnd(ok=False):
                state[e.host] = HostState.FAILED
                failures += 1
            case HostEnd():
                state[e.host] = HostState.UPGRADED if e.host in canary else HostState.DONE
            case BakeBegin() | BakeEnd(cut=True):  # cut: a stop cut it short, on the target, unjudged — put back
                state[e.host] = HostState.BAKING
            case BakeEnd():
                state[e.host] = HostState.DONE if e.ok else HostState.FAILED
                failures += 0 if e.ok else 1
            case RollbackBegin():
                failing = failing or e.failing
                for h in e.hosts:
                    state[h] = HostState.ROLLING_BACK
            case RollbackEnd():
                state[e.host] = HostState.ROLLED_BACK if e.ok else HostState.ROLLBACK_FAILED
            case Halt():
                failing = failing or not e.resumable
            case Hold():
                failing = True
            case Abort() | AbortKept():
                failing = aborted = True
                keep = keep or isinstance(e, AbortKept)
    done = {h for h, s in state.items() if s == HostState.DONE}
    back = sorted(h for h, s in state.items() if s in _BACK)
    # A host mid-step may be on either side of its switch; a finished or rolled-back one is on a known version.
    expect: dict[str, str | None] = {h: None for h in back}
    for h in done:
        expect[h] = plan.host(h).path[-1]
    return Recovery(done=done, back=back, failing=failing, failures=failures, expect=expect, aborted=aborted, keep=keep)


def _last_run_end(entries: Iterable[Record | Mapping[str, Any]]) -> RunEnd | None:
    """The last run-end with no ``resume`` after it (a resume reopens the run: it writes its own run-end)."""
    last: RunEnd | None = None
    for e in records.typed(entries):
        if isinstance(e, RunEnd):
            last = e
        elif isinstance(e, Resume):
            last = None
    return last


def ended(entries: Iterable[Record | Mapping[str, Any]]) -> RunEnd | None:
    """The run-end that closes the run for good, or None while it runs or when it halted resumable."""
    last = _last_run_end(entries)
    return None if last is None or last.resumable else last


def halted(entries: Iterable[Record | Mapping[str, Any]]) -> RunEnd | None:
    """The resumable run-end the run stopped at (no resume since), or None."""
    last = _last_run_end(entries)
    return last if last is not None and last.resumable else None
