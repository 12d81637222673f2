"""File-system safety: directories root may write in, files created only anew, atomic JSON writes."""

from __future__ import annotations

import json
import os

from .errors import OpFailed, insecure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .shapes import Parts

# Root never writes where someone else could swap what it writes to: every directory it writes in
# (install root, releases/, config directories, /var/lib/upgrader and below) must be a real
# directory (no symlink anywhere on its path, checked with lstat from /), and it and each ancestor
# must be owned by root and not writable by group or others.  An ancestor may be world-writable only
# if sticky (/tmp, /var/tmp): others cannot rename or remove what root owns in it.  Temporary files
# get unguessable names and O_CREAT|O_EXCL|O_NOFOLLOW, so a planted file or symlink is never opened.


def check_dir(path: str) -> str:
    """``path`` (absolute) and its ancestors are real directories owned by root and not group/other-writable."""
    import stat

    if not path.startswith("/") or "/../" in path + "/" or "/./" in path + "/":
        raise insecure(path, "not a plain absolute path")
    here = "/"
    names = [n for n in path.split("/") if n]
    for i in range(len(names) + 1):
        if i:
            here = here.rstrip("/") + "/" + names[i - 1]
        st = os.lstat(here)
        if stat.S_ISLNK(st.st_mode):
            raise insecure(here, "it is a symlink (name the real directory instead)")
        if not stat.S_ISDIR(st.st_mode):
            raise insecure(here, "it is not a directory")
        if st.st_uid not in (0, os.geteuid()):
            raise insecure(here, f"it is owned by uid {st.st_uid}")
        last = i == len(names)
        if st.st_mode & 0o022 and (last or not st.st_mode & stat.S_ISVTX):
            raise insecure(here, "it is writable by group or others (mode %o)" % (st.st_mode & 0o7777))
    return path


def secure_dir(path: str, mode: int = 0o755) -> str:
    """Make ``path`` (and missing parents, with ``mode``) if needed, then check_dir it."""
    missing = []
    probe = path
    while probe != "/" and not os.path.lexists(probe):
        missing.append(probe)
        probe = os.path.dirname(probe)
    check_dir(probe)
    for new in reversed(missing):
        try:
            os.mkdir(new, mode)
        except FileExistsError:
            pass
    return check_dir(path)


def token() -> str:
    return os.urandom(8).hex()


def create_private(path: str, mode: int = 0o600) -> int:
    """A new file at ``path``: never an existing one, never through a symlink."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)


def copy_file(src: str, dst: str) -> None:
    """Copy ``src`` (a regular file, not a symlink) to a new ``dst``, keeping mode and (as root) owner."""
    import shutil
    import stat

    fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO is refused below, not waited on
    try:
        st = os.fstat(fin)
        if not stat.S_ISREG(st.st_mode):
            raise OpFailed(f"{src} is not a regular file", path=src)
        fout = create_private(dst)
        try:
            with os.fdopen(os.dup(fin), "rb") as reader, os.fdopen(fout, "wb") as writer:
                shutil.copyfileobj(reader, writer, 1 << 20)
                writer.flush()
                os.fchown(writer.fileno(), st.st_uid, st.st_gid)
                os.fchmod(writer.fileno(), stat.S_IMODE(st.st_mode))
                os.fsync(writer.fileno())
        except BaseException:
            remove_quietly(dst)
            raise
    finally:
        os.close(fin)


def write_json_atomic(path: str, data: object, mode: int = 0o600) -> None:
    tmp = f"{path}.tmp-{token()}"
    fd = create_private(tmp, mode)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    fsync_dir(os.path.dirname(path))


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: str, default: Any = None) -> Any:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


def free_mb(root: str) -> int:
    probe = root
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    st = os.statvfs(probe or "/")
    return st.f_bavail * st.f_frsize // (1 << 20)


MAX_DEFINITIONS_BYTES = 4 << 20  # the largest record read_private_json reads (definitions.json is the largest)


def read_private_json(path: str) -> Any:
    """JSON only this agent can have written: a regular file (never through a symlink), ours, one link, mode
    0600 or stricter, not too large; None for anything else, never an error.  Root runs what some hold."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_uid != os.geteuid()
            or st.st_mode & 0o077
            or st.st_nlink != 1
            or st.st_size > MAX_DEFINITIONS_BYTES
        ):
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            return json.loads(fh.read(MAX_DEFINITIONS_BYTES + 1).decode("utf-8"))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def remove_quietly(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def open_dir_path(top: int, names: Parts) -> int:
    """An fd for the directory ``names`` below the directory fd ``top``, never through a symlink."""
    fd = os.dup(top)
    for name in names:
        try:
            sub = os.open(name, NOFOLLOW_DIR, dir_fd=fd)
        finally:
            os.close(fd)
        fd = sub
    return fd


def copy_hashing(src: str, dst: str) -> str:
    """Copy the uploaded artifact (the SSH user's file: a regular file, never followed as a symlink)."""
    import hashlib
    import stat

    digest = hashlib.sha256()
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # NONBLOCK: a planted FIFO cannot hang us
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OpFailed(f"uploaded artifact {src} is not a regular file", path=src)
        with os.fdopen(fd, "rb") as fin, os.fdopen(create_private(dst), "wb") as fout:
            for block in iter(lambda: fin.read(1 << 20), b""):
                digest.update(block)
                fout.write(block)
    except OSError as exc:
        remove_quietly(dst)
        raise OpFailed(f"cannot read uploaded artifact {src}: {exc}", errno=exc.errno) from None
    return digest.hexdigest()
