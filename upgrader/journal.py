"""The run journal: append-only JSON lines, fsync'd, one directory per run.

A record is written before each host program runs and after it ends, so
``resume`` and ``report`` read facts, not memory.  Nothing secret is ever
written here: plans and events hold references (env var names), not values.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import re
import secrets
import socket
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from upgrader import charset
from upgrader.errors import InputError, Location, Problem, RefusedError
from upgrader.files import append_line, write_atomic
from upgrader.loading import bounded_read, private
from upgrader.loading.records import entry_problem
from upgrader.vocabulary import Event

JOURNAL = "journal.jsonl"
log = logging.getLogger(__name__)
# What a run id looks like (new_run_id); a RUN argument is nothing else, so it names a directory under
# runs/ and nothing outside it (no '/', no '..').
RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_DAMAGED = (
    "the journal is damaged (edited, or a disk error); other runs are unaffected — move this run's directory aside"
)


def controller() -> str:
    """This controller process, as host locks record it: hostname:pid (who to ask whether it still runs)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def operator() -> str:
    """Who is acting: UPGRADER_OPERATOR, else the sudo/login user, at this controller."""
    name = "UPGRADER_OPERATOR" if os.environ.get("UPGRADER_OPERATOR") else "SUDO_USER"
    who = os.environ.get(name) or getpass.getuser()
    # It goes to every host's lock, the journal, the audit log and the reports: no invisible characters
    # (issue 25 §3), whichever variable it comes from.
    reason = charset.problem_text(who)
    if reason is not None:
        raise RefusedError(
            f"the operator's name (${name}, or the login name) {reason}", "set UPGRADER_OPERATOR to a plain name"
        )
    return f"{who}@{socket.gethostname()}"


def new_run_id(component: str, now: datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{component}-{secrets.token_hex(2)}"


def runs_dir(state: Path) -> Path:
    return state / "runs"


def run_directory(state: Path, run_id: str) -> Path:
    """The directory of run ``run_id``: a plain directory directly under runs/, never a path or a symlink."""
    base = runs_dir(state)
    if not RUN_ID_RE.fullmatch(run_id) or run_id.strip(".") == "":
        raise RefusedError(f"{run_id!r} is not a run id", "use an id listed by `upgrader runs`")
    directory = base / run_id
    try:
        info = os.lstat(directory)
    except OSError:
        raise RefusedError(f"no run {run_id} in {base}", "list runs with `upgrader runs`") from None
    if not stat.S_ISDIR(info.st_mode):  # a symlink (or a file) planted under runs/ is not a run
        raise RefusedError(f"{directory} is not a run directory", "list runs with `upgrader runs`")
    journal = directory / JOURNAL
    try:
        if not stat.S_ISREG(os.lstat(journal).st_mode):
            raise RefusedError(f"{journal} is not a regular file", "list runs with `upgrader runs`")
    except FileNotFoundError:
        raise RefusedError(f"no run {run_id} in {base}", "list runs with `upgrader runs`") from None
    # A run's records steer what resume, rollback and promote do (its plan.json is what resume runs):
    # trusted only if nobody but the operator could have written them (issue 25 §5).
    try:
        private.check_record(journal, state)
    except (OSError, private.Untrusted) as exc:
        raise RefusedError(
            f"run {run_id} cannot be trusted: {exc}",
            "runs are records only the operator may write (directories not group- or "
            "world-writable, files the operator's own): look at who wrote it, then "
            "move it aside",
        ) from None
    return directory


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / JOURNAL
        self._lock = threading.Lock()
        self._seq = _count_lines(self.path)

    @property
    def run_id(self) -> str:
        return self.directory.name

    @classmethod
    def create(cls, state: Path, run_id: str) -> Journal:
        for mine in (state, runs_dir(state)):  # journals say who did what: not for other local users
            mine.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(mine, 0o700)
        directory = runs_dir(state) / run_id
        directory.mkdir(mode=0o700)
        return cls(directory)

    @classmethod
    def open(cls, state: Path, run_id: str) -> Journal:
        return cls(run_directory(state, run_id))

    def record(self, event: Event, **data: Any) -> dict[str, Any]:
        """Append one record, fsync'd; ``event`` is one of vocabulary.Event (a name not there is refused)."""
        event = Event(event)  # a str from an older caller or a test: refused unless it is one of the names
        with self._lock:
            self._seq += 1
            entry = {
                "seq": self._seq,
                "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "event": event,
                **data,
            }
            append_line(self.path, json.dumps(entry, sort_keys=True, default=str))
            return entry

    def entries(self) -> list[dict[str, Any]]:
        return list(read(self.path))

    def write_file(self, name: str, text: str) -> Path:
        return write_atomic(self.directory / name, text)


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def read_run(state: Path, run_id: str) -> Iterator[dict[str, Any]]:
    """The records of run ``run_id`` under ``state`` (its directory checked as run_directory does): the one
    way commands read a run's journal, so none names the file itself."""
    return read(run_directory(state, run_id) / JOURNAL)


def read(path: Path) -> Iterator[dict[str, Any]]:
    """The journal's records, each checked; InputError naming ``path:line`` for the first damaged one.

    Only a torn last line (no newline: the controller died while writing it) is skipped; everything
    before it still counts.  Records are bounded in size and nesting, and the fields commands use
    must have their types (``loading.records``), so no reader meets a surprise later.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(
            [
                Problem(
                    Location(str(path)), f"cannot read journal: {exc.strerror or exc}", "list runs with `upgrader runs`"
                )
            ]
        ) from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InputError([Problem(Location(str(path)), "journal is not a regular file", _DAMAGED)])
        if info.st_size > bounded_read.MAX_BYTES["journal"]:
            raise InputError([bounded_read.too_large(path, "journal", info.st_size)])
        number = 0
        while raw := fh.readline(bounded_read.MAX_JOURNAL_LINE + 1):
            number += 1
            if len(raw) > bounded_read.MAX_JOURNAL_LINE:
                raise _damaged(
                    path, number, f"line longer than {bounded_read.MAX_JOURNAL_LINE // bounded_read.MiB} MiB"
                )
            entry = _entry(path, number, raw, torn_ok=not raw.endswith(b"\n"))
            if entry is not None:
                yield entry


def _entry(path: Path, number: int, raw: bytes, torn_ok: bool) -> dict[str, Any] | None:
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise _damaged(path, number, f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", exc.start + 1) from None
    if not text:
        return None
    try:
        entry = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        if torn_ok:  # a torn last line after a crash
            return None
        raise _damaged(path, number, f"not JSON: {exc.msg}", exc.colno) from None
    except (RecursionError, ValueError) as exc:  # deep nesting; NaN, or an integer of thousands of digits
        raise _damaged(
            path,
            number,
            "nested too deeply" if isinstance(exc, RecursionError) else "not JSON: " + " ".join(str(exc).split())[:100],
        ) from None
    if not isinstance(entry, dict):
        raise _damaged(path, number, "not an object")
    problem = entry_problem(entry)
    if problem:
        raise _damaged(path, number, problem)
    return entry


def _no_constant(word: str) -> None:
    raise ValueError(f"{word} is not a number JSON allows")


def _damaged(path: Path, line: int, what: str, column: int | None = None) -> InputError:
    return InputError([Problem(Location(str(path), line, column), f"journal record {what}", _DAMAGED)])


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    kind: str
    component: str
    operator: str
    started: str
    status: str
    exit_code: int | None
    problem: str | None = None  # the journal is damaged: the first problem, file:line: message


def summarize(directory: Path) -> RunSummary:
    """One run's summary; a damaged journal gives a summary that says so (status 'damaged'), never an error."""
    try:
        entries = list(read(directory / JOURNAL))
    except InputError as exc:
        return RunSummary(directory.name, "?", "?", "?", "?", "damaged", None, str(exc.problems[0]))
    start = next((e for e in entries if e["event"] == Event.RUN_START), {})
    end = next((e for e in reversed(entries) if e["event"] == Event.RUN_END), None)
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
    return [
        summarize(d)
        for d in sorted(base.iterdir())
        if RUN_ID_RE.fullmatch(d.name)
        and not d.is_symlink()
        and d.is_dir()
        and (d / JOURNAL).exists()
        and _trusted(d / JOURNAL, state)
    ]


def _trusted(journal: Path, state: Path) -> bool:
    """Whether a run's journal may be listed and read (as run_directory checks it); a warning if not."""
    try:
        private.check_record(journal, state)
    except (OSError, private.Untrusted) as exc:
        log.warning("ignoring run %s: %s (runs are records only the operator may write)", journal.parent.name, exc)
        return False
    return True


def audit(state: Path, **data: Any) -> None:
    """One line per break-glass action, kept apart from run journals for auditors."""
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    append_line(
        state / "audit.log",
        json.dumps({"at": datetime.now(UTC).isoformat(timespec="milliseconds"), **data}, sort_keys=True),
    )
