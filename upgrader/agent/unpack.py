"""Unpacking a release tarball as root: judged whole first, then written only through directory fds."""

from __future__ import annotations

import os

from .errors import OpFailed, unsafe
from .fs import NOFOLLOW_DIR, free_mb
from .releases import META

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tarfile import TarFile, TarInfo
    from types import ModuleType

    from .shapes import Member, Parts


# Root unpacks a vendor's tarball on every host, so nothing in it may act outside releases/<version>/.
# The whole archive is read and judged first (validate_members); only an archive with no bad member
# is written, and then only through directory file descriptors opened with O_NOFOLLOW, so even a
# rule missed here cannot make a write follow a symlink.  The rules, stricter than tarfile's "data"
# filter (which is also applied where this Python has it):
#   * names: relative, no "..", no .upgrader (the engine's metadata) at any depth or in any case;
#   * kinds: regular files, directories, symlinks, hardlinks; never devices, FIFOs or anything else;
#   * nothing beneath a symlink or a file member (so no write can pass through a link the archive
#     made: a -> ., a/b -> .., c -> a/b/..), and no name twice (a later member would replace one);
#   * symlinks: resolved through the archive's own links, they must stay inside the release and out
#     of .upgrader/ (absolute targets are refused);
#   * hardlinks: only to a regular file an earlier member of this archive made;
#   * modes: rwxr-xr-x at most (no setuid/setgid/sticky, no group/other write); owners are root.

MAX_MEMBERS = 200000  # members per tarball; a release with more is refused (memory and inodes stay bounded)
MAX_MEMBER_BYTES = 4 << 30  # bytes of one member at most
LINK_HOPS = 40  # symlinks followed while resolving one target, as the kernel's MAXSYMLINKS


def member_parts(name: str, strip: int) -> Parts:
    """The member's path inside the release as a tuple of names ((), when strip_components drops it)."""
    if name.startswith("/"):
        raise unsafe(f"absolute path {name!r}", name)
    if "\0" in name:
        raise unsafe(f"{name!r} has a NUL byte in its name", name)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise unsafe(f"{name!r} leaves the release directory", name)
    # Only releases/<v>/.upgrader/ is the engine's, but a .upgrader at any depth is refused: a different
    # strip_components must not turn a harmless-looking one into the engine's.
    if any(p.lower() == META for p in parts):
        raise unsafe(f"{name!r} names {META}/, which belongs to upgrader", name)
    return tuple(parts[strip:])


def member_kind(m: TarInfo) -> str:
    if m.isreg():
        return "file"
    if m.isdir():
        return "dir"
    if m.issym():
        return "symlink"
    if m.islnk():
        return "hardlink"
    raise unsafe(f"{m.name!r} is a device or special file", m.name)


def resolve_link(parts: Parts, links: dict[Parts, str]) -> Parts | None:
    """Where symlink ``parts`` points, followed through the archive's own symlinks (``links``: parts ->
    target), as parts relative to the release; None when it leaves the release or loops."""
    todo = list(links[parts].split("/"))
    if links[parts].startswith("/"):
        return None
    here = list(parts[:-1])
    hops = 0
    while todo:
        name = todo.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            if not here:
                return None
            here.pop()
            continue
        here.append(name)
        target = links.get(tuple(here))
        if target is not None:
            hops += 1
            if hops > LINK_HOPS or target.startswith("/"):
                return None
            here.pop()
            todo = target.split("/") + todo
    return tuple(here)


def validate_members(tar: TarFile, strip: int, unreadable: tuple[type[BaseException], ...]) -> tuple[list[Member], int]:
    """Judge every member before anything is written: [(member, kind, parts, link parts)], total bytes."""
    plan: list[Member] = []
    kinds: dict[Parts, str] = {}
    links: dict[Parts, str] = {}
    total = count = 0
    while True:
        try:
            m = tar.next()
        except unreadable as exc:
            raise OpFailed(f"not a readable tarball: {exc}") from None
        if m is None:
            break
        count += 1
        if count > MAX_MEMBERS:  # counted before strip_components: tarfile keeps every member read
            raise unsafe(f"more than {MAX_MEMBERS} members", m.name)
        parts = member_parts(m.name, strip)
        kind = member_kind(m)
        if not parts:
            continue
        if m.size > MAX_MEMBER_BYTES:
            raise unsafe(f"{m.name!r} is {m.size} bytes", m.name)
        if parts in kinds and not (kind == "dir" == kinds[parts]):
            raise unsafe(f"{m.name!r} appears twice", m.name)
        target: Parts | None = None
        if kind == "hardlink":
            target = member_parts(m.linkname, strip)
            if kinds.get(target) not in ("file", "hardlink"):
                raise unsafe(
                    f"hardlink {m.name!r} -> {m.linkname!r} is not to a regular file earlier in the archive", m.name
                )
        elif kind == "symlink":
            if "\0" in m.linkname or not m.linkname:
                raise unsafe(f"link {m.name!r} has an empty target or a NUL byte in it", m.name)
            links[parts] = m.linkname
        kinds[parts] = kind
        total += m.size if kind == "file" else 0
        plan.append((m, kind, parts, target))
    for m, kind, parts, _ in plan:
        for i in range(1, len(parts)):
            if kinds.get(parts[:i], "dir") != "dir":
                raise unsafe("{!r} lies beneath {} {!r}".format(m.name, kinds[parts[:i]], "/".join(parts[:i])), m.name)
        if kind == "symlink":
            where = resolve_link(parts, links)
            if where is None:
                raise unsafe(f"link {m.name!r} -> {m.linkname!r} points outside the release", m.name)
            if where and where[0].lower() == META:
                raise unsafe(f"link {m.name!r} -> {m.linkname!r} points into {META}/", m.name)
    return plan, total


def data_filter_check(tarfile: ModuleType, plan: list[Member], dest: str) -> None:
    """Where this Python has tarfile's "data" filter (3.12, 3.11.4+), it must accept every member too."""
    check = getattr(tarfile, "data_filter", None)
    if check is None:
        return
    for m, _kind, parts, target in plan:
        renamed = m.replace(name="/".join(parts), linkname="/".join(target) if target else m.linkname, deep=False)
        try:
            check(renamed, dest)
        except tarfile.FilterError as exc:
            raise unsafe(f"{m.name!r}: {exc}", m.name) from None


def open_parent(top: int, parts: Parts, made: set[Parts]) -> int:
    """An fd for the directory holding ``parts``, made (0755) as needed, never through a symlink."""
    fd = os.dup(top)
    try:
        for i, name in enumerate(parts[:-1]):
            if parts[: i + 1] not in made:
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                made.add(parts[: i + 1])
            sub = os.open(name, NOFOLLOW_DIR, dir_fd=fd)
            os.close(fd)
            fd = sub
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_member(
    tar: TarFile, top: int, m: TarInfo, kind: str, parts: Parts, target: Parts | None, made: set[Parts]
) -> None:
    import shutil
    import stat

    parent = open_parent(top, parts, made)
    name = parts[-1]
    try:
        if kind == "dir":
            if parts not in made:
                try:
                    os.mkdir(name, 0o755, dir_fd=parent)
                except FileExistsError:
                    if not stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                        raise
                made.add(parts)
        elif kind == "symlink":
            os.symlink(m.linkname, name, dir_fd=parent)
        elif kind == "hardlink":
            assert target is not None  # validate_members gives every hardlink its target
            src = open_parent(top, target, made)
            try:
                if not stat.S_ISREG(os.stat(target[-1], dir_fd=src, follow_symlinks=False).st_mode):
                    raise unsafe(f"hardlink {m.name!r} is not to a regular file", m.name)
                os.link(target[-1], name, src_dir_fd=src, dst_dir_fd=parent, follow_symlinks=False)
            finally:
                os.close(src)
        else:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=parent)
            data = tar.extractfile(m)
            if data is None:  # a regular file always has data; this is tarfile's type, not a case
                raise unsafe(f"{m.name!r} has no data", m.name)
            with os.fdopen(fd, "wb") as out, data:
                shutil.copyfileobj(data, out, 1 << 20)
                os.fchmod(out.fileno(), (m.mode & 0o755) | stat.S_IRUSR)
    finally:
        os.close(parent)


def extract_safely(archive: str, dest: str, strip: int) -> None:
    """Unpack ``archive`` into ``dest`` (which must not exist yet), or refuse it whole, leaving nothing."""
    import shutil
    import tarfile
    import zlib

    unreadable = (tarfile.TarError, EOFError, OSError, ValueError, zlib.error)  # what a corrupt archive raises
    try:
        tar = tarfile.open(archive, "r:*")  # noqa: SIM115 (closed by the with below: only opening is caught here)
    except unreadable as exc:
        raise OpFailed(f"not a readable tarball: {exc}") from None
    with tar:
        plan, total = validate_members(tar, strip, unreadable)
        data_filter_check(tarfile, plan, dest)
        if total > free_mb(os.path.dirname(dest)) * (1 << 20):
            raise OpFailed(f"not enough disk: release needs {total >> 20} MB", errno=28)
        os.mkdir(dest, 0o755)
        try:
            top = os.open(dest, NOFOLLOW_DIR)
            try:
                made: set[Parts] = {()}
                for m, kind, parts, target in plan:
                    write_member(tar, top, m, kind, parts, target, made)
            finally:
                os.close(top)
        except BaseException as exc:
            shutil.rmtree(dest, ignore_errors=True)  # rmtree does not follow the symlinks it removes
            if isinstance(exc, unreadable) and not isinstance(exc, OSError):
                raise OpFailed(f"not a readable tarball: {exc}") from None
            raise
