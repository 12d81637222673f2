"""Files a command writes (--out, --unit-dir): checked before the work starts, written in one place.

A mistyped --out must not cost a run's work (facts gathered over SSH, a plan computed) and then end
in a traceback: ``check`` runs first and refuses a path whose directory does not exist, or that is a
directory, with exit 1; ``write_text`` turns a late failure (disk full, permissions) into the same.
"""

from __future__ import annotations

from pathlib import Path

from upgrader.errors import RefusedError


def check(path: Path | None, option: str = "--out") -> None:
    """Refuse, before any work, an output file that could not be created."""
    if path is None:
        return
    if path.is_dir():
        raise RefusedError(f"cannot write {path}: it is a directory", f"give {option} a file name")
    parent = path.parent
    if not parent.is_dir():
        what = "does not exist" if not parent.exists() else "is not a directory"
        raise RefusedError(f"cannot write {path}: {parent} {what}",
                           f"create {parent} first, or choose another {option}")


def check_dir(path: Path | None, option: str) -> None:
    """Refuse an output directory that neither exists nor can be made in an existing parent."""
    if path is None or path.is_dir():
        return
    if path.exists():
        raise RefusedError(f"cannot write into {path}: it is not a directory", f"give {option} a directory")
    if not path.parent.is_dir():
        raise RefusedError(f"cannot write into {path}: {path.parent} does not exist",
                           f"create it first, or choose another {option}")


def write_text(path: Path, text: str, option: str = "--out") -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise RefusedError(f"cannot write {path}: {exc.strerror or exc}", f"choose another {option}") from None
