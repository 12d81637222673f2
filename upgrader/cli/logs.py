"""Python logging, configured once for every command: human lines or JSON lines on stderr, a file if asked.

The journal stays the record of a run; these lines are what an operator reads live and what a log
shipper collects.  With ``--log-format json`` every line is a JSON object, warnings from retries
and from paramiko included, so nothing bare reaches a collector that expects JSON.

``--log-file F`` holds JSON lines for every command: the log records, each command's result line
(:func:`say`) and a last line with the exit code (:func:`finished`), whatever reached the terminal.
``-v`` adds info lines, ``-vv`` upgrader's debug lines (SSH connections, agent calls; one line each,
never a traceback: the file keeps those), ``-vvv`` the libraries' too (paramiko's key exchange,
Fabric's configuration).
``-q`` leaves errors only: result lines and progress are dropped from the terminal (still in the file).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

LEVELS = (logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)  # -q, default, -v, -vv
LIBRARIES = ("paramiko", "invoke", "fabric")  # their debug (~400 lines for 4 hosts) only with -vvv
LIBRARY_VERBOSE = 3
RESULT = "upgrader.result"  # the logger of result lines: the console prints them itself (say)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging")
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more detail: -v info lines (and plan lists every step), -vv debug, -vvv the SSH libraries' debug too",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=0,
        help="errors only: no progress or result lines (requested data, --format json and "
        "--log-format json lines are still written; --log-file gets everything)",
    )
    group.add_argument("--log-file", type=Path, metavar="FILE", help="also append JSON log lines to FILE")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "data", None)
        if isinstance(extra, dict):
            data.update({k: v for k, v in extra.items() if k not in data})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, sort_keys=True, default=str)


class HumanFormatter(logging.Formatter):
    """One line per record: a traceback is read in the log file, the terminal gets its last line."""

    def format(self, record: logging.LogRecord) -> str:
        where = f"{record.name.removeprefix('upgrader.')}: " if record.levelno <= logging.DEBUG else ""
        text = f"upgrader: {record.levelname.lower()}: {where}{record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f" ({type(exc).__name__}: {exc})" if str(exc) else f" ({type(exc).__name__})"
        return text


def _not_a_result(record: logging.LogRecord) -> bool:
    return record.name != RESULT


def level(verbose: int, quiet: int) -> int:
    return LEVELS[max(0, min(len(LEVELS) - 1, 1 + verbose - quiet))]


def configure(args: argparse.Namespace, stream: TextIO | None = None) -> None:
    """Once per process, from the parsed options; replaces whatever handlers were there."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.DEBUG)
    verbose = getattr(args, "verbose", 0)
    console = logging.StreamHandler(stream or sys.stderr)
    console.setLevel(level(verbose, getattr(args, "quiet", 0)))
    console.setFormatter(JsonFormatter() if getattr(args, "log_format", None) == "json" else HumanFormatter())
    console.addFilter(_not_a_result)
    root.addHandler(console)
    log_file = getattr(args, "log_file", None)
    if log_file is not None:
        from upgrader.errors import RefusedError

        try:
            handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise RefusedError(f"--log-file {log_file}: {exc.strerror or exc}", "choose a writable path") from None
        handler.setLevel(min(console.level, logging.INFO))
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    # paramiko logs every failed handshake at ERROR with a traceback; the transport reports the failure itself.
    # Their debug (key exchange, Fabric's whole configuration per connection) drowns upgrader's own at -vv.
    for name in LIBRARIES:
        quiet = logging.CRITICAL if name == "paramiko" else logging.WARNING
        logging.getLogger(name).setLevel(logging.DEBUG if verbose >= LIBRARY_VERBOSE else quiet)


def configure_from_argv(argv: list[str]) -> None:
    """Before the parser exists: threads started early (SSH handshakes) may log, and must log in the
    format asked for, not as bare lines.  ``configure`` sets it up again once the options are parsed."""
    scanned = argparse.Namespace(verbose=0, quiet=0, log_file=None, log_format=None)
    for i, arg in enumerate(argv):
        if arg == "--log-file" and i + 1 < len(argv):  # a usage error is logged there too
            scanned.log_file = Path(argv[i + 1])
        elif arg.startswith("--log-file="):
            scanned.log_file = Path(arg.partition("=")[2])
        if arg == "--log-format" and i + 1 < len(argv):
            scanned.log_format = argv[i + 1]
        elif arg.startswith("--log-format="):
            scanned.log_format = arg.partition("=")[2]
        elif arg == "--verbose" or (arg.startswith("-v") and set(arg[1:]) == {"v"}):
            scanned.verbose += 1 if arg == "--verbose" else len(arg) - 1
        elif arg in ("-q", "--quiet"):
            scanned.quiet += 1
    try:
        configure(scanned)
    except Exception:  # an unwritable --log-file is reported once the options are parsed
        scanned.log_file = None
        configure(scanned)


def say(args: argparse.Namespace, text: str, *, error: bool = False) -> None:
    """A command's own result line: as it is, or as one JSON log line under --log-format json.

    It goes to the log file too; ``-q`` keeps it off the terminal unless it is an error.
    """
    level_ = logging.ERROR if error else logging.INFO
    logging.getLogger(RESULT).log(level_, text)  # the file's copy (the console filters RESULT out)
    as_json = getattr(args, "log_format", None) == "json"  # for a collector: -q does not thin it
    if getattr(args, "quiet", 0) and not error and not as_json:
        return
    stream = sys.stderr if error else sys.stdout
    if as_json:
        record = logging.LogRecord("upgrader", level_, __file__, 0, text, None, None)
        text = JsonFormatter().format(record)
    print(text, file=stream)


def finished(args: argparse.Namespace, code: int) -> None:
    """The last line of every command's log file: what ran and how it ended (never printed)."""
    command = getattr(args, "command", None) or "?"
    logging.getLogger(RESULT).log(
        logging.ERROR if code else logging.INFO,
        "%s: exit %d",
        command,
        code,
        extra={"data": {"command": command, "exit_code": code}},
    )


@contextlib.contextmanager
def quieted(args: argparse.Namespace) -> Iterator[None]:
    """With -q, a command that changes hosts prints no plan, progress or summary (errors still go to stderr).

    Only where nothing is asked of the operator (--yes) and the output is for people: JSON lines are
    for a collector, and a question must be seen.
    """
    human = getattr(args, "log_format", None) in ("auto", "plain", "rich")
    if not (getattr(args, "quiet", 0) and human and getattr(args, "yes", False)):
        yield
        return
    with open(os.devnull, "w", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
        yield
