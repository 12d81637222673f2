"""A plan's JSON text: the tables of the saved file (schema 4), its canonical form and its indented layout.

A large plan is thousands of hosts running a handful of distinct step lists built from a dozen
distinct operations.  So the file writes each operation once, in ``operations``; each distinct
step list once, in ``programs``, its steps naming operations by index and their ids without the
host's name; and each host names its program and its undo (the operation that puts it back, which
its live steps name too).  models/plan_file.py reads it back and checks every reference.

Two layouts of the same data: the canonical one (sorted keys, compact: what the content hash and
signatures cover) and the file (indented by 2, the top level in ``FILE_ORDER`` so a reader meets
the operations before the hosts that refer to them; keys inside sorted).  Neither builds more
than the tables: the work is linear in hosts and steps, with an id()-keyed cache so an operation
shared by thousands of steps is encoded once.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring  # what json.dumps(..., ensure_ascii=False) writes strings with
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from upgrader.models.plan import Plan

# The file's top-level keys in the order written: what the plan is, then what runs (operations,
# programs, hosts, phases), then what it was made from.  Keys not listed follow, sorted.
FILE_ORDER = (
    "schema_version",
    "component",
    "vendor",
    "target_version",
    "content_hash",
    "playbook",
    "inventory",
    "limit",
    "problems",
    "operations",
    "programs",
    "hosts",
    "phases",
    "groups",
    "artifacts",
    "controller_files",
    "skipped",
    "facts_fingerprint",
    "facts_assumed",
    "spec",
)
# A host entry's fields besides its program and undo, in the in-memory HostPlan.
HOST_FIELDS = ("address", "canary", "datacenter", "from_version", "host", "path", "phase")


def file_data(plan: Plan) -> dict[str, Any]:
    """The plan as the saved file's JSON data, without ``content_hash``: tables, programs, host entries."""
    unset = {"limit"} if plan.limit is None else set()  # an unlimited plan's JSON is as before limits existed
    unset |= set() if plan.groups else {"groups"}  # nor has a plan without redundancy groups
    data = plan.model_dump(mode="json", exclude={"hosts", "content_hash", *unset})
    operations, programs, hosts = tables(plan)
    data.update(operations=operations, programs=programs, hosts=hosts)
    return data


def tables(plan: Plan) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]], list[dict[str, Any]]]:
    """(operations, programs, host entries): each distinct operation and step list once, in order of first use.

    Equal operations are one entry whether or not they are one object (a plan read from a file has
    one object per entry; the planner shares its objects between hosts), so the tables depend only
    on the plan's content: the same plan gives the same bytes.
    """
    operations: list[dict[str, Any]] = []
    by_object: dict[int, int] = {}  # id() of an operation object alive in ``plan`` → its index
    by_text: dict[str, int] = {}

    def ref(op: dict[str, Any] | None) -> int | None:
        if op is None:
            return None
        index = by_object.get(id(op))
        if index is None:
            index = by_text.setdefault(json.dumps(op, sort_keys=True, ensure_ascii=False), len(operations))
            if index == len(operations):
                operations.append(op)
            by_object[id(op)] = index
        return index

    programs: list[list[dict[str, Any]]] = []
    by_steps: dict[tuple[tuple[Any, ...], ...], int] = {}
    hosts = []
    for host in plan.hosts:
        prefix = host.host + "/"
        key = []
        for step in host.steps:
            if not step.id.startswith(prefix):
                raise ValueError(f"step {step.id!r} of host {host.host!r}: a step's id is '<host>/<step>'")
            key.append(
                (step.id[len(prefix) :], step.action, step.version, ref(step.op), ref(step.undo), ref(step.verify))
            )
        steps = tuple(key)
        program = by_steps.get(steps)
        if program is None:
            program = by_steps[steps] = len(programs)
            programs.append([_step_entry(*s) for s in steps])
        entry = {k: getattr(host, k) for k in HOST_FIELDS}
        entry.update(path=list(host.path), program=program, undo=ref(host.undo))
        hosts.append(entry)
    return operations, programs, hosts


def _step_entry(
    step_id: str, action: str, version: str | None, op: int | None, undo: int | None, verify: int | None
) -> dict[str, Any]:
    """A program's step: absent fields are None (no version, no undo, no verify)."""
    entry: dict[str, Any] = {"id": step_id, "action": action, "op": op}
    for key, value in (("version", version), ("undo", undo), ("verify", verify)):
        if value is not None:
            entry[key] = value
    return entry


def plan_json(plan: Plan, *, indent: int | None = None, content_hash: str | None = None) -> str:
    """The plan's file data, and ``content_hash`` when given, as JSON.

    ``indent=None`` is the canonical form (sorted keys, separators ``,`` and ``:``: what the hash
    and signatures cover); otherwise the file's layout: indented, top level in FILE_ORDER.  No
    trailing newline.
    """
    data = file_data(plan)
    if content_hash is not None:
        data["content_hash"] = content_hash
    if indent is None:
        return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    writer = _Writer(indent)
    rank = {key: i for i, key in enumerate(FILE_ORDER)}
    keys = sorted(data, key=lambda k: (rank.get(k, len(rank)), k))
    return writer.join("{", [(encode_basestring(k) + ": ", writer.value(data[k], 1)) for k in keys], "}", 0)


class _Writer:
    """json.dumps's indented layout (sorted keys, ``ensure_ascii=False``), faster than its pure-Python
    indenting encoder: scalars are encoded by json, lists and dicts laid out here.

    ``level`` is the nesting depth of the value being written (0 for the document itself).
    """

    def __init__(self, indent: int) -> None:
        self.indent = indent
        self.encode = json.JSONEncoder(sort_keys=True, ensure_ascii=False, indent=indent).encode

    def value(self, value: Any, level: int) -> str:
        kind = type(value)
        if kind is str:
            return encode_basestring(value)
        if value is None:
            return "null"
        if kind is bool:
            return "true" if value else "false"
        if kind is int:
            return int.__repr__(value)  # as json writes ints
        if kind is list:
            return self.join("[", [("", self.value(v, level + 1)) for v in value], "]", level)
        if kind is dict and all(type(key) is str for key in value):
            items = sorted(value.items())
            return self.join(
                "{", [(encode_basestring(k) + ": ", self.value(v, level + 1)) for k, v in items], "}", level
            )
        # A float, or something json converts first (non-string keys, tuples): json lays it out at
        # depth 0; encoded strings never hold a raw newline, so every "\n" is a line break to indent.
        return self.encode(value).replace("\n", "\n" + " " * (self.indent * level))

    def join(self, start: str, members: list[tuple[str, str]], end: str, level: int) -> str:
        if not members:
            return start + end
        inner, outer = "\n" + " " * (self.indent * (level + 1)), "\n" + " " * (self.indent * level)
        parts = [start]
        for prefix, text in members:
            parts += (inner, prefix, text, ",")
        parts[-1] = outer + end
        return "".join(parts)
