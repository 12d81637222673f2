"""The agent's own state directory (/var/lib/upgrader/<component>): its journal and install record."""

from __future__ import annotations

import json
import os
import time

from .fs import read_private_json, secure_dir, write_json_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .shapes import Ctx, Record, Spec


STATE = "/var/lib/upgrader"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def state_dir(component: str) -> str:
    """/var/lib/upgrader/<component>: the program lock, host lock, journal and staged registry; root only."""
    secure_dir(STATE, 0o700)
    return secure_dir(os.path.join(STATE, component), 0o700)


def append_journal(component: str, record: Record) -> None:
    path = os.path.join(state_dir(component), "journal.jsonl")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def journal_tail(component: str, lines: int) -> list[Any]:
    if not lines:
        return []
    try:
        with open(os.path.join(STATE, component, "journal.jsonl")) as fh:
            data = fh.readlines()[-lines:]
    except OSError:
        return []
    out = []
    for line in data:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def lock_path(ctx: Ctx) -> str:
    return os.path.join(state_dir(ctx["component"]), "lock.json")


# Where a component is installed, as the last program that changed it was told (root only).  A
# controller without the playbook (another desk, a laptop) sends no root and the host's record is used.
INSTALL = "install.json"


def recorded_root(component: str) -> str | None:
    here = os.path.join(STATE, component)
    data = read_private_json(os.path.join(here, INSTALL)) if os.path.isdir(here) else None
    root = data.get("root") if isinstance(data, dict) else None
    return root if isinstance(root, str) and root.startswith("/") else None


def record_root(component: str, root: str) -> None:
    if root and recorded_root(component) != root:
        write_json_atomic(os.path.join(state_dir(component), INSTALL), {"root": root, "at": now()})


# The service a program stopped and has not started again (root only).  A program taken over between its stop
# and its start (an emergency rollback mid-apply) leaves it here, so that a rollback with no playbook and no
# record of the release can still start what runs instead of leaving it down ("nothing to do").
STOPPED = "stopped.json"


def record_stopped(component: str, service: Spec) -> None:
    write_json_atomic(os.path.join(state_dir(component), STOPPED), {"service": service, "at": now()})


def recorded_stopped(component: str) -> Spec | None:
    here = os.path.join(STATE, component)
    data = read_private_json(os.path.join(here, STOPPED)) if os.path.isdir(here) else None
    service = data.get("service") if isinstance(data, dict) else None
    return service if isinstance(service, dict) else None


def forget_stopped(component: str) -> None:
    try:
        os.unlink(os.path.join(state_dir(component), STOPPED))
    except FileNotFoundError:
        pass
