"""Reading a killed run's journal: which hosts finished, which were caught mid-step."""

from __future__ import annotations

from typing import Any

from upgrader.engine.apply import Recovery
from upgrader.engine.vocabulary import Event, HostState
from upgrader.models.plan import Plan

# Hosts resume puts back where they began: caught mid-step, failed, or in a rollback that did not end well.
_BACK = frozenset({HostState.IN_FLIGHT, HostState.UPGRADED, HostState.BAKING, HostState.FAILED,
                   HostState.ROLLING_BACK, HostState.ROLLBACK_FAILED})


def analyze(entries: list[dict[str, Any]], plan: Plan) -> Recovery:
    """Replay the journal: the last word about each host decides what resume must do with it."""
    state: dict[str, HostState] = {}
    failing = False
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
        elif ev == Event.BAKE_END:
            state[host] = HostState.DONE if e.get("ok") else HostState.FAILED
            failures += 0 if e.get("ok") else 1
        elif ev == Event.ROLLBACK_BEGIN:
            failing = True
            for h in e.get("hosts", []):
                state[h] = HostState.ROLLING_BACK
        elif ev == Event.ROLLBACK_END:
            state[host] = HostState.ROLLED_BACK if e.get("ok") else HostState.ROLLBACK_FAILED
        elif ev in (Event.HALT, Event.HOLD, Event.ABORT):
            failing = True
    done = {h for h, s in state.items() if s == HostState.DONE}
    back = sorted(h for h, s in state.items() if s in _BACK)
    # A host mid-step may be on either side of its switch; a finished or rolled-back one is on a known version.
    expect: dict[str, str | None] = {h: None for h in back}
    for h in done:
        expect[h] = plan.host(h).path[-1]
    return Recovery(done=done, back=back, failing=failing, failures=failures, expect=expect)
