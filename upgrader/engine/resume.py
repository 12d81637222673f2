"""Reading a killed or halted run's journal: which hosts finished, which were caught mid-step.

A run halted by a signal or a closed window ends with a ``run-end`` that says ``resumable``; its halt
and its put-back of cut canaries (``rollback-begin`` with ``failing: false``) are not failures, so
resume carries on with the plan.  An abort is: resume finishes putting back what the run changed.
"""

from __future__ import annotations

from typing import Any

from upgrader.engine.policy_state import Recovery
from upgrader.models.plan import Plan
from upgrader.vocabulary import Event, HostState

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


def analyze(entries: list[dict[str, Any]], plan: Plan) -> Recovery:
    """Replay the journal: the last word about each host decides what resume must do with it."""
    state: dict[str, HostState] = {}
    failing = aborted = keep = False
    failures = 0
    canary = {h.host for h in plan.hosts if h.canary}
    for e in entries:
        ev, host = e["event"], str(e.get("host") or "")
        if ev == Event.HOST_BEGIN:
            state[host] = HostState.IN_FLIGHT
        elif ev == Event.HOST_END:
            if not e.get("ok"):
                state[host] = HostState.FAILED
                failures += 1
            else:
                state[host] = HostState.UPGRADED if host in canary else HostState.DONE
        elif ev == Event.BAKE_BEGIN:
            state[host] = HostState.BAKING
        elif ev == Event.BAKE_END and e.get("cut"):
            state[host] = HostState.BAKING  # a stop cut it short: on the target, unjudged — put back
        elif ev == Event.BAKE_END:
            state[host] = HostState.DONE if e.get("ok") else HostState.FAILED
            failures += 0 if e.get("ok") else 1
        elif ev == Event.ROLLBACK_BEGIN:
            failing = failing or e.get("failing", True) is not False
            for h in e.get("hosts", []):
                state[h] = HostState.ROLLING_BACK
        elif ev == Event.ROLLBACK_END:
            state[host] = HostState.ROLLED_BACK if e.get("ok") else HostState.ROLLBACK_FAILED
        elif ev == Event.HALT:
            failing = failing or not e.get("resumable")
        elif ev in (Event.HOLD, Event.ABORT, Event.ABORT_KEPT):
            failing = True
            aborted = aborted or ev != Event.HOLD
            keep = keep or ev == Event.ABORT_KEPT
    done = {h for h, s in state.items() if s == HostState.DONE}
    back = sorted(h for h, s in state.items() if s in _BACK)
    # A host mid-step may be on either side of its switch; a finished or rolled-back one is on a known version.
    expect: dict[str, str | None] = {h: None for h in back}
    for h in done:
        expect[h] = plan.host(h).path[-1]
    return Recovery(done=done, back=back, failing=failing, failures=failures, expect=expect, aborted=aborted, keep=keep)


def _last_run_end(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last run-end with no ``resume`` after it (a resume reopens the run: it writes its own run-end)."""
    last: dict[str, Any] | None = None
    for e in entries:
        if e.get("event") == Event.RUN_END:
            last = e
        elif e.get("event") == Event.RESUME:
            last = None
    return last


def ended(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run-end that closes the run for good, or None while it runs or when it halted resumable."""
    last = _last_run_end(entries)
    return None if last is None or last.get("resumable") else last


def halted(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The resumable run-end the run stopped at (no resume since), or None."""
    last = _last_run_end(entries)
    return last if last is not None and last.get("resumable") else None
