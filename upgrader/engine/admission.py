"""When may a run start, and may it start the next phase?  Glue between the guard and the clock.

The guard (``upgrader.windows``) is pure; this module owns the clock: real
time, or ``--now`` plus the time elapsed since the command started (dry runs
and tests).  Phase estimates come from past runs' journals when there are any.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from upgrader.errors import InputError, RefusedError
from upgrader.journal import list_runs, read_run
from upgrader.models.inventory import Inventory
from upgrader.models.plan import Plan
from upgrader.models.playbook import Playbook
from upgrader.vocabulary import Event

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def clock(fixed: datetime | None) -> Clock:
    if fixed is None:
        return lambda: datetime.now(UTC)
    started = time.monotonic()
    return lambda: fixed + timedelta(seconds=time.monotonic() - started)


def datacenters(plan: Plan) -> list[str]:
    return list(dict.fromkeys(h.datacenter for h in plan.hosts))


def prefetch(spec: Playbook, inventory: Inventory, now: datetime) -> threading.Thread:
    """Load the market calendars (pandas, ~2 s) in the background while facts are gathered over SSH."""

    def warm() -> None:
        from upgrader.windows import evaluate

        try:
            evaluate(spec, inventory, list(inventory.datacenters), now)
        except Exception:
            log.debug("calendar prefetch failed", exc_info=True)

    thread = threading.Thread(target=warm, name="calendar-prefetch", daemon=True)
    thread.start()
    return thread


def check_now(plan: Plan, inventory: Inventory, now: datetime, overrides: Any = None) -> Any:
    """Refuse (exit 1) unless every market and window of the plan's datacenters allows a run now."""
    from upgrader.windows import evaluate

    verdict = evaluate(plan.spec, inventory, datacenters(plan), now, overrides)
    if not verdict.allowed:
        raise RefusedError(
            f"not now: {verdict.text()}", "wait for the next allowed window (`upgrader windows`), or schedule the run"
        )
    return verdict


def admitter(plan: Plan, inventory: Inventory, now: Clock, overrides: Any = None) -> Callable[[float], str | None]:
    """A callback for the engine: a reason to stop before a phase, or None to go on."""
    from upgrader.windows import evaluate

    def admit(estimate: float) -> str | None:
        at = now()
        verdict = evaluate(plan.spec, inventory, datacenters(plan), at, overrides)
        if not verdict.allowed:
            return f"the window closed: {verdict.blockers[0].text if verdict.blockers else verdict.text()}"
        if verdict.closes_at is not None and at + timedelta(seconds=estimate) > verdict.closes_at:
            left = (verdict.closes_at - at).total_seconds()
            return (
                f"the next phase needs ~{estimate:.0f}s but the window closes in {left:.0f}s "
                f"(at {verdict.closes_at.isoformat()})"
            )
        return None

    return admit


def past_host_seconds(state: Path, component: str, last: int = 5) -> float | None:
    """Median seconds one host's upgrade program took in recent runs of ``component``."""
    samples: list[float] = []
    for summary in reversed(list_runs(state)):  # a damaged journal is listed as kind '?': never a sample
        if summary.component != component or summary.kind != "apply":
            continue
        try:
            entries = list(read_run(state, summary.run_id))
        except (InputError, RefusedError) as exc:  # an estimate only: a damaged or untrusted journal is skipped
            log.warning("past durations: %s", exc)
            continue
        for e in entries:
            if e["event"] in (Event.HOST_END, Event.BAKE_END) and e.get("ok"):
                samples.append(sum(o.get("seconds", 0.0) for o in e.get("ops") or []))
        last -= 1
        if last == 0:
            break
    return statistics.median(samples) if samples else None
