"""Every file a command writes (--out, --unit-dir, --metrics, --metrics-dir): one policy, here.

The policy (README, "Output paths"):

- **upgrader never creates a directory an option names.**  An output file's directory, and an output
  directory, must already exist: a typo (``--metrics-dir /var/lib/node-exporter`` for ``node_exporter``)
  must not grow a tree nobody reads while the real collector goes stale.
- **Checked before the work**, with exit 1: a mistyped --out must not cost a run's work (facts
  gathered over SSH, a plan computed) and then end in a traceback.  ``check`` (a file) and
  ``check_dir`` (a directory) are called first; ``write_text`` checks again when it writes (the
  directory may have gone meanwhile) and turns a late failure (disk full, permissions) into the
  same refusal.
- A run's metrics export (apply, resume, rollback ``--metrics-dir``) is a by-product: the run is never
  refused or failed for it; the same refusal is printed as a warning instead (commands/live.py).
"""

from __future__ import annotations

import os
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
        raise RefusedError(
            f"cannot write {path}: {parent} {what}",
            f"create {parent} first (upgrader never creates directories), or choose another {option}",
        )


def check_dir(path: Path | None, option: str) -> None:
    """Refuse, before any work, an output directory that does not exist (it is never created)."""
    if path is None or path.is_dir():
        return
    if path.exists():
        raise RefusedError(f"cannot write into {path}: it is not a directory", f"give {option} a directory")
    raise RefusedError(
        f"cannot write into {path}: it does not exist",
        f"create it first (upgrader never creates directories), or choose another {option}",
    )


def write_text(path: Path, text: str, option: str = "--out", *, mode: int | None = None, atomic: bool = False) -> Path:
    """Write ``text`` to ``path`` under the policy above; ``atomic``: through a temporary name in the same
    directory (not ending like ``path``: a textfile collector ignores it) renamed over ``path``."""
    check(path, option)
    try:
        if atomic:
            from upgrader.files import write_atomic

            return write_atomic(
                path, text, mode=0o600 if mode is None else mode, tmp=path.with_name(f".{path.name}.{os.getpid()}.tmp")
            )
        path.write_text(text, encoding="utf-8")
        if mode is not None:
            os.chmod(path, mode)
    except OSError as exc:
        raise RefusedError(f"cannot write {path}: {exc.strerror or exc}", f"choose another {option}") from None
    return path
