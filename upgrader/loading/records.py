"""The shape of a journal record, checked once when it is read, so no reader meets a surprise later.

Readers (show, report, resume, status, admission's past durations) use ``e.get("ops")``,
``op["seconds"]``, ``e["host"]``… freely; a journal edited by hand or torn by a disk error must fail
where it is read, naming the line, not as a TypeError three modules later.  Only the fields those
readers use are typed here; any other field may hold any JSON.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from upgrader.loading import bounded_read

_NONE = type(None)
MAX_SECONDS = 1e7  # ~116 days: no op takes longer, and timedelta arithmetic stays finite
PER_HOST = frozenset({"host-begin", "host-end", "bake-begin", "bake-end", "rollback-end"})

# field -> the JSON types it may have (bool is not an int here)
TOP: dict[str, tuple[type, ...]] = {
    "event": (str,),
    "at": (str,),
    "seq": (int,),
    "host": (str,),
    "kind": (str,),
    "component": (str,),
    "operator": (str,),
    "status": (str,),
    "message": (str,),
    "exit_code": (int, _NONE),
    "ok": (bool,),
    "error": (str, _NONE),
    "ops": (list,),
    "hosts": (list, dict),
    "phase": (int,),
    "failed": (dict, list),
    "plan_hash": (str, _NONE),
    "version": (str, _NONE),
    "to": (str, _NONE),
    "reason": (str, _NONE),
    "stderr": (str, _NONE),
    "unreachable": (bool,),
    "inventory_path": (str,),
    "artifacts": (str, list, _NONE),
    "argv": (list,),
    "seconds": (int, float),
    "datacenter": (str, _NONE),
    "steps": (list,),
    "break_lock": (str, _NONE),
    "done": (list,),
    "back": (list,),
    "failing": (bool,),
    "path": (list,),
    "run": (str,),
}
OP: dict[str, tuple[type, ...]] = {
    "op": (str,),
    "seconds": (int, float),
    "ok": (bool,),
    "error": (str, _NONE),
    "checks": (list, _NONE),
    "steps": (list, _NONE),
    "stdout": (str, _NONE),
    "stderr": (str, _NONE),
    "current": (str, _NONE),
    "to": (str, _NONE),
    "from": (str, _NONE),
    "step": (str, _NONE),
}
CHECK: dict[str, tuple[type, ...]] = {"check": (str,), "ok": (bool,), "reason": (str, _NONE), "attempts": (int,)}
HOST_END: dict[str, tuple[type, ...]] = {"state": (str,), "detail": (str,), "version": (str, _NONE)}
# Fields whose shape depends on the event: a run's end maps each host to where it ended, the
# other events list host names; stage-end maps hosts to errors, phase-end lists them.
SHAPES: list[tuple[str, str, type]] = [("run-end", "hosts", dict), ("stage-end", "failed", dict)]
_NAMES = {
    list: "a list",
    dict: "an object",
    str: "a string",
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    _NONE: "null",
}


def entry_problem(entry: dict[str, Any]) -> str | None:
    """What is wrong with one record, or None."""
    for required in ("event", "at"):
        if required not in entry:
            return f"has no '{required}'"
    problem = _fields(entry, TOP, "")
    if problem:
        return problem
    if entry["event"] in PER_HOST and "host" not in entry:
        return f"'{entry['event']}' has no 'host'"
    if not _moment(entry["at"]):
        return f"'at' {entry['at'][:40]!r} is not an ISO 8601 time"
    for i, op in enumerate(entry.get("ops") or []):
        problem = _object(op, OP, f"ops[{i}]")
        for j, check in enumerate((op.get("checks") or []) if problem is None else []):
            problem = problem or _object(check, CHECK, f"ops[{i}].checks[{j}]")
        if problem:
            return problem
    hosts = entry.get("hosts")
    for event, key, kind in SHAPES:
        if entry["event"] == event and key in entry and not isinstance(entry[key], kind):
            return f"'{key}' of '{event}' must be {_NAMES[kind]}"
    if isinstance(hosts, list) and not all(isinstance(h, str) for h in hosts):
        return "'hosts' must list host names"
    if isinstance(hosts, dict):
        for name, info in hosts.items():
            problem = _object(info, HOST_END, f"hosts.{name}")
            if problem:
                return problem
    if isinstance(entry.get("failed"), dict) and not all(isinstance(v, str | _NONE) for v in entry["failed"].values()):
        return "'failed' must map host names to errors"
    return None


def _object(value: Any, table: dict[str, tuple[type, ...]], where: str) -> str | None:
    if not isinstance(value, dict):
        return f"'{where}' must be an object"
    return _fields(value, table, where + ".")


# Lists whose items reports join or escape as text.
TEXT_LISTS = frozenset({"argv", "steps"})


def _fields(value: dict[str, Any], table: dict[str, tuple[type, ...]], prefix: str) -> str | None:
    for key, types in table.items():
        if key not in value:
            continue
        item = value[key]
        if not isinstance(item, types) or (isinstance(item, bool) and bool not in types):
            wanted = " or ".join(_NAMES.get(t, t.__name__) for t in types)
            return f"'{prefix}{key}' must be {wanted}, not {type(item).__name__}"
        if key in TEXT_LISTS and isinstance(item, list) and not all(isinstance(i, str | _NONE) for i in item):
            return f"'{prefix}{key}' must be a list of strings"
        if (
            key == "seconds"
            and isinstance(item, int | float)
            and not (0 <= item <= MAX_SECONDS and math.isfinite(item))
        ):
            return f"'{prefix}seconds' {item!r} is out of range"
    return None


def _moment(text: str) -> bool:
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return bounded_read.reasonable_year(at.year)
