"""Small shared formatting for the renderers: durations, times, run titles."""

from __future__ import annotations

from datetime import datetime

from upgrader.reporting.model import RunRecord
from upgrader.vocabulary import HostState, RunStatus

STATE_TONE = {
    HostState.DONE: "ok",
    HostState.ROLLED_BACK: "warn",
    HostState.ROLLBACK_FAILED: "bad",
    HostState.FAILED: "bad",
    HostState.UNREACHABLE: "bad",
    HostState.HELD: "bad",
    HostState.HANDED_OVER: "bad",
    RunStatus.SUCCEEDED: "ok",
    RunStatus.FAILED_ROLLED_BACK: "warn",
    RunStatus.HALTED: "warn",
    RunStatus.STAGE_FAILED: "warn",
    "unfinished": "bad",
    RunStatus.REFUSED: "warn",
}


def duration(seconds: float | None) -> str:
    """0.35s, 12.4s, 3m 05s, 1h 02m."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def offset(seconds: float) -> str:
    """Time since the run started: +0:03.2, +12:41.0."""
    minutes, secs = divmod(max(0.0, seconds), 60)
    return f"+{int(minutes)}:{secs:04.1f}"


def stamp(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else "—"


def clock(at: datetime) -> str:
    return at.strftime("%H:%M:%S")


def title(record: RunRecord) -> str:
    if record.kind == "rollback":
        return f"emergency rollback of {record.component} to {record.version or 'the previous release'}"
    return f"{record.component} {record.version or '?'} ({record.kind})"


def tone(status: str) -> str:
    return STATE_TONE.get(status, "neutral")


def command(record: RunRecord) -> str:
    return " ".join(["upgrader", *record.argv]) if record.argv else "—"
