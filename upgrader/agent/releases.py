"""The install layout: releases/<version>/, the current link, and what each switch recorded."""

from __future__ import annotations

import os
import re

from .errors import OpFailed
from .fs import fsync_dir, read_json, secure_dir, token, write_json_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .shapes import Record


META = ".upgrader"  # per-release metadata directory inside releases/<version>/


def install_dirs(root: str) -> str:
    """The install root and releases/, checked (and made) before any operation writes under them."""
    secure_dir(root)
    return secure_dir(releases_dir(root))


def releases_dir(root: str) -> str:
    return os.path.join(root, "releases")


def release_path(root: str, version: object) -> str:
    """releases/<version>, for a version that is one plain directory name."""
    if (
        not isinstance(version, str)
        or version in ("", ".", "..")
        or "/" in version
        or "\0" in version
        or version.startswith(".")
    ):
        raise OpFailed(f"{version!r} cannot be a release directory name", version=version)
    return os.path.join(releases_dir(root), version)


def current_version(root: str) -> str | None:
    try:
        target = os.readlink(os.path.join(root, "current"))
    except OSError:
        return None
    return os.path.basename(target.rstrip("/"))


def staged_versions(root: str) -> list[str]:
    try:
        names = os.listdir(releases_dir(root))
    except OSError:
        return []
    return sorted(n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(releases_dir(root), n)))


def release_meta(root: str, version: object, name: str, default: Any = None) -> Any:
    try:
        where = release_path(root, version)
    except OpFailed:  # a name read from a link or a record that cannot be a release: nothing recorded there
        return default
    return read_json(os.path.join(where, META, name), default)


def meta_dir(root: str, version: str) -> str:
    """releases/<version>/.upgrader/, made 0700 if missing and checked like every directory root writes in."""
    return secure_dir(os.path.join(release_path(root, version), META), 0o700)


def set_release_meta(root: str, version: str, name: str, data: object) -> None:
    write_json_atomic(os.path.join(meta_dir(root, version), name), data)


def flip(root: str, version: str) -> None:
    """Point current at releases/<version> with one rename: never a moment without a link."""
    if not os.path.isdir(release_path(root, version)):
        raise OpFailed(f"release {version} is not staged under {releases_dir(root)}", missing=version)
    install_dirs(root)
    tmp = os.path.join(root, ".current.tmp-" + token())
    os.symlink(os.path.join("releases", version), tmp)  # symlink() never follows or replaces what is there
    os.replace(tmp, os.path.join(root, "current"))
    fsync_dir(root)


def rollback_chain(root: str, current: str | None, target: str) -> list[str] | None:
    """Releases whose migrations must be undone, newest first, walking the recorded previous links."""
    chain, seen, here = [], set(), current
    while here and here != target and here not in seen:
        seen.add(here)
        chain.append(here)
        here = (release_meta(root, here, "previous.json") or {}).get("version")
    return chain if here == target else None


def installed_by(root: str, version: str | None) -> Record:
    """{version (the release before), run, at}: what the switch to ``version`` recorded; {} if nothing."""
    data = release_meta(root, version, "previous.json", {}) if version else {}
    return data if isinstance(data, dict) and isinstance(data.get("version"), str) else {}


def run_start(root: str, current: str) -> str | None:
    """The release this host was on before the run that installed ``current``: the previous links are
    walked while they belong to that run (a multi-hop run 5.0 -> 5.1 -> 5.2 goes back to 5.0), and the
    farthest of them still staged is taken.  None if nothing is recorded."""
    first = installed_by(root, current)
    run, here = first.get("run"), first.get("version")
    chain, seen = [], set([current])
    while here and here not in seen:
        seen.add(here)
        chain.append(here)
        back = installed_by(root, here)
        if not run or back.get("run") != run:
            break
        here = back.get("version")
    staged = [v for v in chain if is_staged(root, v)]
    return staged[-1] if staged else (chain[0] if chain else None)


def is_staged(root: str, version: str) -> bool:
    try:
        return os.path.isdir(release_path(root, version))
    except OpFailed:
        return False


def default_target(root: str, current: str | None, undo: object) -> tuple[str | None, str | None]:
    """(target, None) or (None, why there is nothing to undo) for a rollback without --to.

    ``undo`` (from the controller's look at the fleet): {"runs": the runs being rolled back,
    "seen": this host's clock (time.time()) when it looked}.  A host whose current release was installed
    by another run, before the controller looked, is untouched by the run being rolled back."""
    if not current:
        return None, "nothing installed"
    by = installed_by(root, current)
    if not by:
        return None, f"no previous release recorded for {current}"
    if isinstance(undo, dict):
        runs = undo.get("runs") or []
        seen, switched = undo.get("seen"), by.get("t")
        racing = isinstance(seen, (int, float)) and isinstance(switched, (int, float)) and switched > seen
        if by.get("run") not in runs and not racing:
            return None, "untouched: {} was installed by run {}, not by the run being rolled back".format(
                current,
                by.get("run"),
            )
    return run_start(root, current), None


RELEASE_PLACEHOLDER = re.compile(r"\{(release|version)\}")


def with_release(value: Any, root: str, version: str | None) -> Any:
    """``value`` (a service, a check list, a version probe) with ``{release}`` and ``{version}`` filled in.

    The controller leaves these two for the agent where only the host knows the release: the current
    one for facts, the recorded previous one for a rollback.  Only argument lists (lists of strings)
    are touched.  A placeholder with no release to name (``version`` None) raises OpFailed: it never
    becomes an empty string.
    """
    if isinstance(value, dict):
        return dict((k, with_release(v, root, version)) for k, v in value.items())
    if not isinstance(value, list):
        return value
    if not (value and all(isinstance(arg, str) for arg in value)):
        return [with_release(v, root, version) for v in value]

    def fill(match: re.Match[str]) -> str:
        if version is None:
            raise OpFailed(f"{match.group(0)} has no value: no release is current under {root}")
        return f"{root}/releases/{version}" if match.group(1) == "release" else version

    return [RELEASE_PLACEHOLDER.sub(fill, arg) for arg in value]
