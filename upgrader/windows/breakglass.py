"""Bypassing the window guard on purpose (emergency rollback, a simulated clock), on the record."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from upgrader import moments
from upgrader.errors import RefusedError
from upgrader.windows.verdict import Verdict


@dataclass(frozen=True)
class BreakGlass:
    """A journal record: the guard was bypassed, when, by whom and why."""

    reason: str
    at: dt.datetime
    actor: str | None = None
    verdict: Verdict | None = None  # what the guard would have said, if it was asked
    simulated: dt.datetime | None = None  # the time the guard was told it was (`--now`), if not the real one

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": "guard-bypassed",
            "reason": self.reason,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "blockers": [b.to_dict() for b in self.verdict.blockers] if self.verdict else None,
            "simulated_now": self.simulated.isoformat() if self.simulated else None,
        }

    def summary(self) -> str:
        """One line for the notification and the terminal."""
        how = f"the guard was told it is {self.simulated.isoformat()}" if self.simulated else "the guard was bypassed"
        real = (
            "; at the real time it would have refused: " + "; ".join(b.text for b in self.verdict.blockers)
            if self.verdict and self.verdict.blockers
            else ""
        )
        return f"break-glass by {self.actor or '?'}: {how} ({self.reason}){real}"


def break_glass(
    reason: str,
    now: dt.datetime,
    *,
    actor: str | None = None,
    verdict: Verdict | None = None,
    simulated: dt.datetime | None = None,
) -> BreakGlass:
    """Record a deliberate bypass; a bypass without a reason is refused."""
    text = " ".join(reason.split()) if isinstance(reason, str) else ""
    if not text:
        raise RefusedError(
            "bypassing the trading-window guard needs a reason",
            "say why, e.g. --reason 'ordergw 5.2 rejects orders, rolling back'",
        )
    return BreakGlass(reason=text, at=moments.utc(now), actor=actor, verdict=verdict, simulated=simulated)
