"""What a run tells its watcher as it goes: a listener with one method per kind of event.

The engine calls ``listener.halt(message)``, ``listener.failure(message, host)``… on a ``Listener``; a
kind misspelt is an AttributeError where it is said (and mypy's), not a line that silently never shows
(pyinfra's callback class per event is the model).  ``Lines`` writes plain lines or JSON lines with the
standard library only; the live ``rich`` table is the CLI's (upgrader/cli/progress.py), so the engine,
the Temporal worker and an emergency rollback piped to a file never import it.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, TextIO


class ProgressKind(StrEnum):
    """The kinds of progress lines (the ``event`` of a JSON line, and of a Temporal run's live events)."""

    RUN = "run"  # a run starts: what, by whom
    PHASE = "phase"
    STAGE_FAILED = "stage-failed"
    PAUSE = "pause"
    GATE = "gate"
    WAIT = "wait"  # "… s left" while a bake, pause or gate waits
    FAILURE = "failure"
    ROLLBACK = "rollback"
    RECOVER = "recover"  # resume (or a Temporal run) putting back a host caught mid-step
    HALT = "halt"
    TARGET = "target"  # an emergency rollback: where a host goes
    SUMMARY = "summary"


Row = tuple[str, str, str, str]  # host, datacenter, end state, detail


class Listener(Protocol):
    """What a run says as it goes, one method per kind (ProgressKind), plus each host's live state."""

    def host_state(self, host: str, state: str, detail: str = "") -> None: ...
    def run(self, message: str) -> None: ...
    def phase(self, message: str) -> None: ...
    def stage_failed(self, message: str, host: str | None = None) -> None: ...
    def pause(self, message: str) -> None: ...
    def gate(self, message: str) -> None: ...
    def wait(self, message: str, host: str | None = None, left: float | None = None) -> None: ...
    def failure(self, message: str, host: str | None = None) -> None: ...
    def rollback(self, message: str) -> None: ...
    def recover(self, message: str, host: str | None = None) -> None: ...
    def halt(self, message: str) -> None: ...
    def target(self, message: str, host: str, **data: Any) -> None: ...
    def summary(self, title: str, rows: list[Row]) -> None: ...


class Lines:
    """A Listener that writes each event as a line: plain text (``plain``) or JSON (``json``)."""

    def __init__(self, fmt: str = "plain", stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.fmt = fmt
        self.states: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    # ------------------------------------------------------------ one method per kind
    def run(self, message: str) -> None:
        self.event(ProgressKind.RUN, message)

    def phase(self, message: str) -> None:
        self.event(ProgressKind.PHASE, message)

    def stage_failed(self, message: str, host: str | None = None) -> None:
        self.event(ProgressKind.STAGE_FAILED, message, host)

    def pause(self, message: str) -> None:
        self.event(ProgressKind.PAUSE, message)

    def gate(self, message: str) -> None:
        self.event(ProgressKind.GATE, message)

    def wait(self, message: str, host: str | None = None, left: float | None = None) -> None:
        self.event(ProgressKind.WAIT, message, host, **({} if left is None else {"left": left}))

    def failure(self, message: str, host: str | None = None) -> None:
        self.event(ProgressKind.FAILURE, message, host)

    def rollback(self, message: str) -> None:
        self.event(ProgressKind.ROLLBACK, message)

    def recover(self, message: str, host: str | None = None) -> None:
        self.event(ProgressKind.RECOVER, message, host)

    def halt(self, message: str) -> None:
        self.event(ProgressKind.HALT, message)

    def target(self, message: str, host: str, **data: Any) -> None:
        self.event(ProgressKind.TARGET, message, host, **data)

    # ------------------------------------------------------------ output
    def event(self, kind: ProgressKind, message: str, host: str | None = None, **data: Any) -> None:
        """One line (every method above comes here; a display overrides ``write``)."""
        with self._lock:
            if self.fmt == "json":
                record = {"at": _stamp(), "event": kind, "host": host, "message": message, **data}
                self.stream.write(json.dumps(record, sort_keys=True, default=str) + "\n")
                self.stream.flush()
            else:
                self.write(f"{_now()} {(host + ': ') if host else ''}{message}")

    def write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def host_state(self, host: str, state: str, detail: str = "") -> None:
        with self._lock:
            self.states[host] = (state, detail)

    def summary(self, title: str, rows: list[Row]) -> None:
        """rows: host, datacenter, end state, detail."""
        if self.fmt == "json":
            columns = ("host", "datacenter", "state", "detail")
            self.event(ProgressKind.SUMMARY, title, rows=[dict(zip(columns, r, strict=True)) for r in rows])
            return
        self.stream.write(plain_table(title, rows))
        self.stream.flush()


def replay(listener: Listener, kind: str, message: str, host: str | None = None) -> None:
    """Say again an event another process recorded as (kind, message, host): a Temporal run's live events."""
    try:
        say = SAYERS[ProgressKind(kind)]
    except ValueError:
        say = None
    if say is None:  # a kind this version does not know (a newer worker's): still shown, as a failure is not
        listener.run(message if not host else f"{host}: {message}")
        return
    say(listener, message, host)


# Each kind's method, for replay (tests/unit/test_progress.py checks every kind has one).
SAYERS: dict[ProgressKind, Callable[[Listener, str, str | None], None] | None] = {
    ProgressKind.RUN: lambda t, m, h: t.run(m),
    ProgressKind.PHASE: lambda t, m, h: t.phase(m),
    ProgressKind.STAGE_FAILED: lambda t, m, h: t.stage_failed(m, h),
    ProgressKind.PAUSE: lambda t, m, h: t.pause(m),
    ProgressKind.GATE: lambda t, m, h: t.gate(m),
    ProgressKind.WAIT: lambda t, m, h: t.wait(m, h),
    ProgressKind.FAILURE: lambda t, m, h: t.failure(m, h),
    ProgressKind.ROLLBACK: lambda t, m, h: t.rollback(m),
    ProgressKind.RECOVER: lambda t, m, h: t.recover(m, h),
    ProgressKind.HALT: lambda t, m, h: t.halt(m),
    ProgressKind.TARGET: lambda t, m, h: t.target(m, h or "?"),
    ProgressKind.SUMMARY: None,  # has rows, never replayed as a line
}


def plain_table(title: str, rows: list[Row]) -> str:
    """The summary for logs and pipes: aligned columns, no box drawing, one line per host."""
    header = ("host", "dc", "state", "detail")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    lines = [
        title,
        *("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3] for r in [header, *rows]),
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _now() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S")
