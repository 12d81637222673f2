"""Bounded reading of every file upgrader takes in: size, encoding and kind of file are checked first.

A file is read through one function so that no input can cost unbounded memory or time before it is
even parsed: a 10 GB inventory, /dev/zero, a FIFO that never ends or a file that is not UTF-8 are
refused here with the file's name and a hint.  The caps are documented in the README ("Input
limits"); each is several times what a real estate needs: bench/plan_10k.py's 10,000-host inventory
is 1.7 MB and its saved plan 49 MB (`upgrader diff` of two such plans peaks at ~400 MB RSS).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from upgrader.errors import InputError, Location, Problem

MiB = 1024 * 1024
MAX_BYTES = {
    "playbook": 1 * MiB,
    "overrides": 1 * MiB,
    "inventory": 8 * MiB,
    "facts": 16 * MiB,
    "plan": 128 * MiB,
    "journal": 128 * MiB,
}
MAX_JOURNAL_LINE = 16 * MiB  # one record; a host's result with its outputs is a few KB
MAX_DEPTH = 48  # nesting of mappings and lists, in YAML and in JSON (the models need < 10)
# Times given on the command line (--now, --on) or read from journals: far from datetime's limits
# (years 1 and 9999), so adding a window, a margin or a run's durations cannot overflow.
YEARS = (2000, 9000)


def reasonable_year(year: int) -> bool:
    return YEARS[0] <= year <= YEARS[1]


def read_text(path: Path, kind: str) -> str:
    """The whole of ``path`` as text, or InputError naming the file (and line:col of a bad byte)."""
    return decode(read_bytes(path, kind), path)


def read_bytes(path: Path, kind: str) -> bytes:
    cap = MAX_BYTES[kind]
    try:  # O_NONBLOCK: opening a FIFO must not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputError([Problem(Location(str(path)), f"{kind} file not found", "check the path")]) from None
    except OSError as exc:
        raise InputError(
            [
                Problem(
                    Location(str(path)),
                    f"cannot read {kind} file: {exc.strerror or exc}",
                    "check the path and its permissions",
                )
            ]
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(
                [
                    Problem(
                        Location(str(path)),
                        f"{kind} path is not a regular file",
                        "name a file (not a directory, device or pipe)",
                    )
                ]
            )
        if info.st_size > cap:
            raise InputError([too_large(path, kind, info.st_size)])
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(cap + 1)  # the size can grow while reading (or be 0 for /proc files)
    except OSError as exc:
        raise InputError([Problem(Location(str(path)), f"cannot read {kind} file: {exc.strerror or exc}")]) from None
    finally:
        os.close(fd)
    if len(data) > cap:
        raise InputError([too_large(path, kind, len(data))])
    return data


def too_large(path: Path, kind: str, size: int) -> Problem:
    return Problem(
        Location(str(path)),
        f"{kind} file is larger than the {MAX_BYTES[kind] // MiB} MiB limit ({size} bytes)",
        "is this the right file? the limits per kind of input are listed in the README (Input limits)",
    )


def decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError(
            [
                Problem(
                    Location(str(path), line, col),
                    f"not UTF-8 text (byte 0x{data[exc.start]:02x})",
                    "save the file as UTF-8",
                )
            ]
        ) from None


def depth_of(value: object, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of parsed JSON, walked without recursion; stops counting past ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > limit:
                return depth
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
