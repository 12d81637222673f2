"""The run journal: append-only JSON lines, fsync'd, one directory per run.

A record is written before each host program runs and after it ends, so
``resume`` and ``report`` read facts, not memory.  Nothing secret is ever
written here: plans and events hold references (env var names), not values.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from upgrader.errors import RefusedError
from upgrader.files import write_atomic

JOURNAL = "journal.jsonl"


def operator() -> str:
    """Who is acting: UPGRADER_OPERATOR, else the sudo/login user, at this controller."""
    who = os.environ.get("UPGRADER_OPERATOR") or os.environ.get("SUDO_USER") or getpass.getuser()
    return f"{who}@{socket.gethostname()}"


def new_run_id(component: str, now: datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{component}-{secrets.token_hex(2)}"


def runs_dir(state: Path) -> Path:
    return state / "runs"


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / JOURNAL
        self._lock = threading.Lock()
        self._seq = sum(1 for _ in self.path.open()) if self.path.exists() else 0

    @property
    def run_id(self) -> str:
        return self.directory.name

    @classmethod
    def create(cls, state: Path, run_id: str) -> Journal:
        for private in (state, runs_dir(state)):  # journals say who did what: not for other local users
            private.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(private, 0o700)
        directory = runs_dir(state) / run_id
        directory.mkdir(mode=0o700)
        return cls(directory)

    @classmethod
    def open(cls, state: Path, run_id: str) -> Journal:
        directory = runs_dir(state) / run_id
        if not (directory / JOURNAL).exists():
            raise RefusedError(f"no run {run_id} in {runs_dir(state)}", "list runs with `upgrader runs`")
        return cls(directory)

    def record(self, event: str, **data: Any) -> dict[str, Any]:
        with self._lock:
            self._seq += 1
            entry = {"seq": self._seq, "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                     "event": event, **data}
            line = json.dumps(entry, sort_keys=True, default=str) + "\n"
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            return entry

    def entries(self) -> list[dict[str, Any]]:
        return list(read(self.path))

    def write_file(self, name: str, text: str) -> Path:
        return write_atomic(self.directory / name, text)


def read(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                # A torn last line after a crash: everything before it still counts.
                continue


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    kind: str
    component: str
    operator: str
    started: str
    status: str
    exit_code: int | None


def summarize(directory: Path) -> RunSummary:
    entries = list(read(directory / JOURNAL))
    start = next((e for e in entries if e["event"] == "run-start"), {})
    end = next((e for e in reversed(entries) if e["event"] == "run-end"), None)
    return RunSummary(
        run_id=directory.name,
        kind=start.get("kind", "?"),
        component=start.get("component", "?"),
        operator=start.get("operator", "?"),
        started=start.get("at", "?"),
        status=end.get("status", "?") if end else "unfinished",
        exit_code=end.get("exit_code") if end else None,
    )


def list_runs(state: Path) -> list[RunSummary]:
    base = runs_dir(state)
    if not base.exists():
        return []
    return [summarize(d) for d in sorted(base.iterdir()) if (d / JOURNAL).exists()]


def audit(state: Path, **data: Any) -> None:
    """One line per break-glass action, kept apart from run journals for auditors."""
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    line = json.dumps({"at": datetime.now(UTC).isoformat(timespec="milliseconds"), **data}, sort_keys=True)
    fd = os.open(state / "audit.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
