"""Reading a killed run's journal: which hosts finished, which were caught mid-step."""

from __future__ import annotations

from typing import Any

from upgrader.engine.apply import Recovery
from upgrader.models.plan import Plan


def analyze(entries: list[dict[str, Any]], plan: Plan) -> Recovery:
    """Replay the journal: the last word about each host decides what resume must do with it."""
    state: dict[str, str] = {}
    failing = False
    failures = 0
    canary = {h.host for h in plan.hosts if h.canary}
    for e in entries:
        ev, host = e["event"], str(e.get("host") or "")
        if ev == "host-begin":
            state[host] = "in-flight"
        elif ev == "host-end":
            if not e.get("ok"):
                state[host] = "failed"
                failures += 1
            else:
                state[host] = "upgraded" if host in canary else "done"
        elif ev == "bake-begin":
            state[host] = "baking"
        elif ev == "bake-end":
            state[host] = "done" if e.get("ok") else "failed"
            failures += 0 if e.get("ok") else 1
        elif ev == "rollback-begin":
            failing = True
            for h in e.get("hosts", []):
                state[h] = "rolling-back"
        elif ev == "rollback-end":
            state[host] = "rolled-back" if e.get("ok") else "rollback-failed"
        elif ev in ("halt", "hold", "abort"):
            failing = True
    done = {h for h, s in state.items() if s == "done"}
    back = sorted(h for h, s in state.items() if s in ("in-flight", "upgraded", "baking", "failed", "rolling-back",
                                                         "rollback-failed"))
    # A host mid-step may be on either side of its switch; a finished or rolled-back one is on a known version.
    expect: dict[str, str | None] = {h: None for h in back}
    for h in done:
        expect[h] = plan.host(h).path[-1]
    return Recovery(done=done, back=back, failing=failing, failures=failures, expect=expect)
