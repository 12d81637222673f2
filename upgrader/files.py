"""Durable local writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
from pathlib import Path


def append_line(path: Path, line: str, *, mode: int = 0o600) -> None:
    """Append ``line`` (one JSON record, say) to ``path`` in one write, and fsync it before returning.

    The one durable append of the controller (run journals, the audit log): O_APPEND makes each write
    land whole at the end, the fsync makes a record survive a crash once this returns, and O_NOFOLLOW
    refuses a symlink planted at the name.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, (line if line.endswith("\n") else line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str, *, mode: int = 0o600, tmp: Path | None = None) -> Path:
    """Write ``text`` to ``tmp`` (default: ``path`` + .tmp), fsync it, then rename it over ``path``."""
    tmp = tmp or path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path
