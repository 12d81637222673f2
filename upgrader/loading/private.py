"""Records and caches upgrader keeps for the operator: read only if nobody else could have written them.

The state directory holds records (the connections record of an inventory, issue 25 §5) and the cache
directory holds market calendars; each steers what a command does before, or without, anything else
checking it.  A file there is used only if:

- it is a regular file (not a symlink, FIFO or device; opened with O_NOFOLLOW|O_NONBLOCK and checked
  with fstat on what was opened), owned by the user upgrader runs as, with no permission bits for
  group or others (0600);
- every directory from ``top`` (the state or cache directory) down to it is a real directory owned by
  that user (or root) and not writable by group or others;
- it is at most ``limit`` bytes.

Anything else is ignored (the caller carries on as if there were no record, or rebuilds the cache),
with a warning naming the file and why: a planted or loosened record is something to look at.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)


class Untrusted(Exception):
    """Why a record cannot be used."""


def read_private(path: Path, top: Path, limit: int, *, warn: bool = True) -> bytes | None:
    """The bytes of ``path`` if it is the operator's own private file (see the module); None if it does
    not exist or cannot be trusted (then with a warning; a cache, rebuilt at once, says so only at debug)."""
    try:
        return _read(path, top, limit)
    except FileNotFoundError:
        return None
    except (OSError, Untrusted) as exc:
        log.log(
            logging.WARNING if warn else logging.DEBUG,
            "ignoring %s: %s (upgrader uses records only if they are the operator's own, mode 0600, in "
            "directories only the operator can write)",
            path,
            exc,
        )
        return None


def _read(path: Path, top: Path, limit: int) -> bytes:
    check_dirs(top, path.parent)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Untrusted("not a regular file")
        if st.st_uid != os.geteuid():
            raise Untrusted(f"owned by uid {st.st_uid}, not {os.geteuid()}")
        if st.st_mode & 0o077:
            raise Untrusted(f"mode {stat.S_IMODE(st.st_mode):04o}, not 0600")
        if st.st_size > limit:
            raise Untrusted(f"{st.st_size} bytes, more than {limit}")
        data = os.read(fd, limit + 1)
        if len(data) > limit:
            raise Untrusted(f"more than {limit} bytes")
        return data
    finally:
        os.close(fd)


def check_dirs(top: Path, leaf: Path) -> None:
    """``top`` and each directory below it down to ``leaf``: real, the operator's (or root's), not g/o-writable."""
    top, leaf = Path(os.path.abspath(top)), Path(os.path.abspath(leaf))
    if leaf != top and top not in leaf.parents:
        raise Untrusted(f"{leaf} is not under {top}")
    # The state or cache directory itself may be a link the operator set up (~/.local/state -> /data/…):
    # what it leads to is checked; below it, nothing may be a link.
    here = Path(os.path.realpath(top))
    for part in (None, *leaf.relative_to(top).parts):
        if part is not None:
            here = here / part
        st = os.lstat(here)
        if not stat.S_ISDIR(st.st_mode):
            raise Untrusted(f"{here} is not a directory (or is a symlink)")
        if st.st_uid not in (0, os.geteuid()):
            raise Untrusted(f"{here} is owned by uid {st.st_uid}")
        if st.st_mode & 0o022:
            raise Untrusted(f"{here} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})")


def check_record(path: Path, top: Path) -> None:
    """Raise Untrusted unless ``path`` is a regular file (not a symlink) the operator owns and only the
    operator can write, in directories ``check_dirs`` accepts from ``top``: a run's journal, its plan.

    Run records are written 0600 by upgrader; a group- or world-readable one (a copy kept for an auditor)
    still says only what the operator wrote, so only the write bits are refused here.
    """
    check_dirs(top, path.parent)
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise Untrusted(f"{path} is not a regular file (or is a symlink)")
    if st.st_uid != os.geteuid():
        raise Untrusted(f"{path} is owned by uid {st.st_uid}, not {os.geteuid()}")
    if st.st_mode & 0o022:
        raise Untrusted(f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})")
