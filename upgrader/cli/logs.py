"""Python logging, configured once for every command: human lines or JSON lines on stderr, a file if asked.

The journal stays the record of a run; these lines are what an operator reads live and what a log
shipper collects.  With ``--log-format json`` every line is a JSON object, warnings from retries
and from paramiko included, so nothing bare reaches a collector that expects JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

LEVELS = (logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)  # -q, default, -v, -vv


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging")
    group.add_argument("-v", "--verbose", action="count", default=0,
                       help="more detail: -v info lines (and plan lists every step), -vv debug")
    group.add_argument("-q", "--quiet", action="count", default=0, help="errors only")
    group.add_argument("--log-file", type=Path, metavar="FILE", help="also append JSON log lines to FILE")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {"at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, sort_keys=True, default=str)


class HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = f"upgrader: {record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def level(verbose: int, quiet: int) -> int:
    return LEVELS[max(0, min(len(LEVELS) - 1, 1 + verbose - quiet))]


def configure(args: argparse.Namespace, stream: TextIO | None = None) -> None:
    """Once per process, from the parsed options; replaces whatever handlers were there."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.DEBUG)
    console = logging.StreamHandler(stream or sys.stderr)
    console.setLevel(level(getattr(args, "verbose", 0), getattr(args, "quiet", 0)))
    console.setFormatter(JsonFormatter() if getattr(args, "log_format", None) == "json" else HumanFormatter())
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
    logging.getLogger("paramiko").setLevel(logging.CRITICAL if console.level > logging.DEBUG else logging.DEBUG)


def configure_from_argv(argv: list[str]) -> None:
    """Before the parser exists: threads started early (SSH handshakes) may log, and must log in the
    format asked for, not as bare lines.  ``configure`` sets it up again once the options are parsed."""
    scanned = argparse.Namespace(verbose=0, quiet=0, log_file=None, log_format=None)
    for i, arg in enumerate(argv):
        if arg == "--log-format" and i + 1 < len(argv):
            scanned.log_format = argv[i + 1]
        elif arg.startswith("--log-format="):
            scanned.log_format = arg.partition("=")[2]
        elif arg in ("-v", "--verbose", "-vv"):
            scanned.verbose += 2 if arg == "-vv" else 1
        elif arg in ("-q", "--quiet"):
            scanned.quiet += 1
    configure(scanned)


def say(args: argparse.Namespace, text: str, *, error: bool = False) -> None:
    """A command's own result line: as it is, or as one JSON log line under --log-format json."""
    stream = sys.stderr if error else sys.stdout
    if getattr(args, "log_format", None) == "json":
        record = logging.LogRecord("upgrader", logging.ERROR if error else logging.INFO, __file__, 0, text, None, None)
        text = JsonFormatter().format(record)
    print(text, file=stream)
