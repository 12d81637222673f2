"""Bypassing the window guard on purpose (emergency rollback), on the record."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from upgrader.errors import RefusedError
from upgrader.windows.verdict import Verdict


@dataclass(frozen=True)
class BreakGlass:
    """A journal record: the guard was bypassed, when, by whom and why."""

    reason: str
    at: dt.datetime
    actor: str | None = None
    verdict: Verdict | None = None  # what the guard would have said, if it was asked

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": "guard-bypassed",
            "reason": self.reason,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "blockers": [b.to_dict() for b in self.verdict.blockers] if self.verdict else None,
        }


def break_glass(reason: str, now: dt.datetime, *, actor: str | None = None,
                verdict: Verdict | None = None) -> BreakGlass:
    """Record a deliberate bypass; a bypass without a reason is refused."""
    text = " ".join(reason.split()) if isinstance(reason, str) else ""
    if not text:
        raise RefusedError("bypassing the trading-window guard needs a reason",
                           "say why, e.g. --break-glass 'ordergw 5.2 rejects orders, rolling back'")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return BreakGlass(reason=text, at=now.astimezone(dt.UTC), actor=actor, verdict=verdict)
