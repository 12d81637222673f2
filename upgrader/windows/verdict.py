"""What the guard decided, as frozen data an engine can journal and a person can read."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

Kind = Literal["market", "margin", "maintenance", "freeze", "override"]


def show(at: dt.datetime, zone: str) -> str:
    """'Tue 2026-11-24 16:00 America/New_York (2026-11-24 21:00 UTC)'."""
    local = at.astimezone(ZoneInfo(zone))
    utc = at.astimezone(dt.UTC)
    if zone == "UTC":
        return f"{utc:%a %Y-%m-%d %H:%M} UTC"
    return f"{local:%a %Y-%m-%d %H:%M} {zone} ({utc:%Y-%m-%d %H:%M} UTC)"


@dataclass(frozen=True)
class Blocker:
    """One reason the run may not start now; ``until`` is when this reason ends (aware, UTC)."""

    kind: Kind
    what: str  # e.g. "XNYS is open"
    until: dt.datetime
    zone: str  # IANA zone the reason is counted in (the market's, the window's, the freeze day's)
    text: str  # one sentence for operators, with local and UTC times

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "what": self.what,
            "until": self.until.isoformat(),
            "zone": self.zone,
            "text": self.text,
        }


@dataclass(frozen=True)
class Window:
    """An allowed stretch; ``end`` is None when it lasts past the search horizon."""

    start: dt.datetime
    end: dt.datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat() if self.end else None}


@dataclass(frozen=True)
class Verdict:
    """May a run start at ``now``?

    ``closes_at``: when allowed, when the current allowed window ends (None if
    not within the horizon).  ``next_allowed``: the start of the next allowed
    window that begins after now — when blocked, when the run may start; when
    allowed, the window after the current one.  ``windows``: the allowed
    windows from now to the horizon, in order.
    """

    now: dt.datetime
    allowed: bool
    blockers: tuple[Blocker, ...]
    closes_at: dt.datetime | None
    next_allowed: dt.datetime | None
    windows: tuple[Window, ...]
    markets: tuple[str, ...]
    zone: str  # the zone times are shown in (first maintenance window's, else first datacenter's)

    def text(self) -> str:
        lines = [f"{'allowed' if self.allowed else 'blocked'} at {show(self.now, self.zone)}"]
        lines += [f"  - {b.text}" for b in self.blockers]
        if self.allowed:
            closes = show(self.closes_at, self.zone) if self.closes_at else "not within the horizon"
            lines.append(f"this window closes: {closes}")
        if self.next_allowed:
            lines.append(f"next allowed window: {self.describe(self.window_at(self.next_allowed))}")
        elif not self.allowed:
            lines.append("no allowed window within the horizon")
        return "\n".join(lines)

    def window_at(self, start: dt.datetime) -> Window:
        return next((w for w in self.windows if w.start == start), Window(start, None))

    def describe(self, window: Window) -> str:
        end = show(window.end, self.zone) if window.end else "beyond the horizon"
        return f"{show(window.start, self.zone)} → {end}"

    def to_dict(self) -> dict[str, Any]:
        def iso(t: dt.datetime | None) -> str | None:
            return t.isoformat() if t else None

        return {
            "now": self.now.isoformat(),
            "allowed": self.allowed,
            "blockers": [b.to_dict() for b in self.blockers],
            "closes_at": iso(self.closes_at),
            "next_allowed": iso(self.next_allowed),
            "windows": [w.to_dict() for w in self.windows],
            "markets": list(self.markets),
            "zone": self.zone,
        }
