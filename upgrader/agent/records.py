"""Root-only records of what this agent staged, what a release was verified with, and what it last verified."""

from __future__ import annotations

import json
import os

from .errors import OpFailed
from .fs import check_dir, read_json, read_private_json, remove_quietly, write_json_atomic
from .releases import installed_by, release_path, staged_versions
from .state import STATE, now, state_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .shapes import Ctx, Record, Spec


# Which releases this agent staged, and from which artifact, is kept in a root-only registry
# (/var/lib/upgrader/<component>/staged.json), not in the release directory: a marker inside
# releases/<v>/ sits next to files that came from a tarball, and anything that could write there
# could copy a genuine marker beside other files (an HMAC over (version, sha256) could be replayed
# the same way, and would need a key to keep).  Each entry also records the directory's (device,
# inode), so a directory swapped in at that name afterwards does not count either.


def staged_path(component: str) -> str:
    return os.path.join(state_dir(component), "staged.json")


def staged_registry(component: str) -> dict[str, Any]:
    """{version: {"sha256", "run", "staged_at", "dev", "ino"}} as this agent recorded them; {} if none."""
    here = os.path.join(STATE, component)
    if not os.path.isdir(here):
        return {}
    data = read_json(os.path.join(check_dir(here), "staged.json"), {})
    return data if isinstance(data, dict) else {}


def staged_entry(root: str, component: str, version: str) -> Record | None:
    """The registry entry for ``version`` if it still describes the directory at releases/<version>."""
    import stat

    entry = staged_registry(component).get(version)
    if not isinstance(entry, dict):
        return None
    try:
        st = os.lstat(release_path(root, version))
    except (OSError, OpFailed):
        return None
    if not stat.S_ISDIR(st.st_mode) or [st.st_dev, st.st_ino] != [entry.get("dev"), entry.get("ino")]:
        return None
    return entry


def record_staged(component: str, version: str, entry: Record | None) -> None:
    registry = staged_registry(component)
    if entry is None:
        registry.pop(version, None)
    else:
        registry[version] = entry
    write_json_atomic(staged_path(component), registry)


# When a release passes its verify after being switched to, the agent records the service and
# checks it was verified with (definitions.json, next to the staged registry, root only), bound to
# the release directory's (device, inode).  An emergency rollback back to that release uses them
# instead of whatever playbook the controller has at hand (a newer release's checks may not fit).
# Root runs the commands in a definition, so one is trusted only as this agent writes it: a regular
# file (never through a symlink), owned by root, one link, mode 0600, in a checked root-only
# directory, whose entry's digest matches and whose release directory is still the one recorded.


def definitions_path(component: str) -> str:
    return os.path.join(state_dir(component), "definitions.json")


def definition_digest(service: object, checks: object) -> str:
    import hashlib

    return hashlib.sha256(json.dumps([service, checks], sort_keys=True).encode()).hexdigest()


def record_definition(ctx: Ctx, version: str, service: Spec, checks: list[Spec]) -> bool:
    """After a verified install of ``version``: what it was verified with.  Best effort, never fails verify."""
    try:
        path = definitions_path(ctx["component"])  # the state directory, made and checked
        st = os.lstat(release_path(ctx["root"], version))
        data = read_private_json(path)
        data = data if isinstance(data, dict) else {}  # anything else is not ours: start afresh
        releases = set(staged_versions(ctx["root"]))
        data = dict((v, e) for v, e in data.items() if v in releases)  # pruned releases leave no record behind
        data[version] = {
            "service": service,
            "checks": checks,
            "run": ctx["run"],
            "at": now(),
            "dev": st.st_dev,
            "ino": st.st_ino,
            "sha256": definition_digest(service, checks),
        }
        write_json_atomic(path, data)
        return True
    except (OSError, OpFailed, TypeError, ValueError):
        return False


def recorded_definition(root: str, component: str, version: str) -> Record | None:
    """The definition recorded for ``version`` if this agent wrote it and it still describes that release."""
    import stat

    try:
        here = check_dir(os.path.join(STATE, component))
        st = os.lstat(release_path(root, version))
    except (OSError, OpFailed):
        return None
    data = read_private_json(os.path.join(here, "definitions.json"))
    entry = data.get(version) if isinstance(data, dict) else None
    if (
        not isinstance(entry, dict)
        or not stat.S_ISDIR(st.st_mode)
        or [st.st_dev, st.st_ino] != [entry.get("dev"), entry.get("ino")]
    ):
        return None
    service, checks = entry.get("service"), entry.get("checks")
    if (
        not isinstance(service, dict)
        or not isinstance(checks, list)
        or not all(isinstance(c, dict) and isinstance(c.get("kind"), str) for c in checks)
        or entry.get("sha256") != definition_digest(service, checks)
    ):
        return None
    return entry


# The release the host last verified (by an install's verify or a rollback's), root only, next to the
# host lock.  Removed before the current link moves, so it never names an unverified current release.
VERIFIED = "verified.json"


def record_verified(ctx: Ctx, version: str, how: str, checks: list[Any]) -> None:
    try:
        write_json_atomic(
            os.path.join(state_dir(ctx["component"]), VERIFIED),
            {"version": version, "run": ctx["run"], "at": now(), "how": how, "checks": checks},
        )
    except (OSError, OpFailed):
        pass  # best effort: the host journal still has the verify


def forget_verified(component: str) -> None:
    remove_quietly(os.path.join(state_dir(component), VERIFIED))


def verified_record(root: str, component: str, installed: str | None) -> Record | None:
    """The release this host last verified ({version, run, at, how, checks}), or None if it has no record.

    An install verified before verified.json existed counts by its recorded definition, if that verify
    came after the switch that made it current."""
    here = os.path.join(STATE, component)
    data = read_private_json(os.path.join(here, VERIFIED)) if os.path.isdir(here) else None
    if isinstance(data, dict) and isinstance(data.get("version"), str):
        return data
    entry = recorded_definition(root, component, installed) if installed and os.path.isdir(here) else None
    since = installed_by(root, installed).get("at") if installed else None
    if entry and (not since or str(entry.get("at") or "") >= since):
        return {
            "version": installed,
            "run": entry.get("run"),
            "at": entry.get("at"),
            "how": "verify",
            "checks": [c.get("name") for c in entry.get("checks", [])],
        }
    return None
