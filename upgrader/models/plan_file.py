"""Reading a saved plan (schema 4): its tables checked, every reference resolved (pure).

The file (models/plan_json.py writes it) holds each operation once in ``operations``, each
distinct step list once in ``programs`` (steps name operations by index, ids without the host),
and per host the index of its program and of its undo.  A saved plan is outside input: every
reference is checked before anything uses the plan, and the first bad one is refused in one
line naming its JSON path, with the fix (plan again).  What is checked:

- every index is an index of its table (pydantic refuses negative ones and non-integers);
- every operation and every program is used, and none is written twice (the planner writes each
  once: an entry nobody runs, or a second copy, is an edit a reviewer would not see run);
- a host's steps have distinct ids, and no host is listed twice;
- a host's undo is a rollback, and a step whose undo is a rollback names its own host's undo, not
  another host's (programs are shared, so every host running a program must have the same one).

No entry refers to another entry of its own table, so no chain of references, and no cycle, can
exist.  Plans of schemas 2 and 3 (every step holding its operations) are still read, cheaply, for
`diff`, reports and finding an old run's playbook; models/plan.py's check_schema refuses to run them.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from upgrader.models.plan import READABLE_SCHEMAS, SCHEMA_VERSION, Action, HostPlan, Plan, PlanHead, Step
from upgrader.models.types import Strict, trusted

HINT = "the plan was edited or damaged: re-run `upgrader plan` and have the new plan reviewed"
Loc = tuple[str | int, ...]


class PlanFileError(ValueError):
    """A saved plan whose tables or references are not what the planner writes."""

    def __init__(self, loc: Loc, message: str, hint: str = HINT) -> None:
        super().__init__(f"{dotted(loc)}: {message} — {hint}")
        self.loc, self.message, self.hint = loc, f"{dotted(loc)}: {message}", hint


class StepEntry(Strict):
    """A step of a program: its id without the host's name, and its operations by index."""

    id: str
    action: Action
    version: str | None = None
    op: int = Field(ge=0)
    undo: int | None = Field(None, ge=0)
    verify: int | None = Field(None, ge=0)


class HostEntry(Strict):
    host: str
    datacenter: str
    address: str
    from_version: str
    path: list[str]
    phase: int
    canary: bool
    program: int = Field(ge=0, description="index in programs: the host's steps")
    undo: int | None = Field(ge=0, description="index in operations: what puts the host back (its live steps' undo)")


class PlanFile(PlanHead):
    """The saved file of schema 4, as written."""

    operations: list[dict[str, Any]]
    programs: list[list[StepEntry]]
    hosts: list[HostEntry]


def plan_from_data(data: Any) -> Plan:
    """A plan from a saved file's JSON data; PlanFileError or ValidationError if it is not one."""
    if not isinstance(data, dict):
        raise PlanFileError((), f"expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version == SCHEMA_VERSION:
        return _resolve(PlanFile.model_validate(data))
    if type(version) is int and version in READABLE_SCHEMAS:
        return _legacy(Plan.model_validate(data))
    raise PlanFileError(
        ("schema_version",),
        f"{json.dumps(version)[:20] if 'schema_version' in data else 'missing'}: this upgrader reads plans of "
        f"schema {', '.join(map(str, READABLE_SCHEMAS))} and writes schema {SCHEMA_VERSION}",
        "re-run `upgrader plan` with this upgrader",
    )


def _legacy(plan: Plan) -> Plan:
    """A schema 2 or 3 plan: every step held its operations; the host's undo is its live steps' rollback."""
    hosts = [
        h.model_copy(
            update={"undo": next((s.undo for s in h.steps if s.undo and s.undo.get("op") == "rollback"), None)}
        )
        for h in plan.hosts
    ]
    return plan.model_copy(update={"hosts": hosts})


def _resolve(pf: PlanFile) -> Plan:
    check_references(pf)
    ops = pf.operations
    programs = [
        [
            (s.id, s.action, s.version, ops[s.op], None if s.undo is None else ops[s.undo], _at(ops, s.verify))
            for s in program
        ]
        for program in pf.programs
    ]
    hosts = []
    for h in pf.hosts:
        steps = [
            trusted(Step, id=f"{h.host}/{rel}", action=action, version=version, op=op, undo=undo, verify=verify)
            for rel, action, version, op, undo, verify in programs[h.program]
        ]
        hosts.append(
            trusted(
                HostPlan,
                host=h.host,
                datacenter=h.datacenter,
                address=h.address,
                from_version=h.from_version,
                path=h.path,
                phase=h.phase,
                canary=h.canary,
                steps=steps,
                undo=_at(ops, h.undo),
            )
        )
    return trusted(Plan, **{name: getattr(pf, name) for name in PlanHead.model_fields}, hosts=hosts)


def _at(ops: list[dict[str, Any]], index: int | None) -> dict[str, Any] | None:
    return None if index is None else ops[index]


def check_references(pf: PlanFile) -> None:
    """Raise PlanFileError at the first reference or table entry the planner would not have written."""
    ops, programs = pf.operations, pf.programs
    seen: dict[str, int] = {}
    for i, op in enumerate(ops):
        if not isinstance(op.get("op"), str):
            raise PlanFileError(("operations", i), "an operation names what it runs in 'op' (a string)")
        first = seen.setdefault(json.dumps(op, sort_keys=True), i)
        if first != i:
            raise PlanFileError(("operations", i), f"repeats operations[{first}]; each operation is written once")
    used_ops: set[int] = set()
    seen_programs: dict[tuple[tuple[Any, ...], ...], int] = {}
    for p, program in enumerate(programs):
        if not program:
            raise PlanFileError(("programs", p), "a program has at least one step")
        ids: set[str] = set()
        for s, step in enumerate(program):
            if step.id in ids:
                raise PlanFileError(("programs", p, s, "id"), f"{step.id!r} is twice in this program")
            ids.add(step.id)
            for field in ("op", "undo", "verify"):
                index = getattr(step, field)
                if index is not None:
                    _in_range(("programs", p, s, field), index, len(ops), "operations")
                    used_ops.add(index)
        key = tuple(tuple(step.model_dump().values()) for step in program)
        first = seen_programs.setdefault(key, p)
        if first != p:
            raise PlanFileError(("programs", p), f"repeats programs[{first}]; each program is written once")
    names: dict[str, int] = {}
    run: set[int] = set()
    for h, host in enumerate(pf.hosts):
        first = names.setdefault(host.host, h)
        if first != h:
            raise PlanFileError(("hosts", h, "host"), f"{host.host!r} is also hosts[{first}]")
        _in_range(("hosts", h, "program"), host.program, len(programs), "programs")
        run.add(host.program)
        if host.undo is not None:
            _in_range(("hosts", h, "undo"), host.undo, len(ops), "operations")
            used_ops.add(host.undo)
            if ops[host.undo]["op"] != "rollback":
                raise PlanFileError(
                    ("hosts", h, "undo"),
                    f"operations[{host.undo}] is a {ops[host.undo]['op']!r}, not a rollback: "
                    "a host's undo puts it back",
                )
        _check_undo_references(h, host, programs[host.program], ops)
    for i in sorted(set(range(len(ops))) - used_ops)[:1]:
        raise PlanFileError(("operations", i), "no step or host uses it; a plan holds only what runs")
    for p in sorted(set(range(len(programs))) - run)[:1]:
        raise PlanFileError(("programs", p), "no host runs it; a plan holds only what runs")


def _check_undo_references(h: int, host: HostEntry, program: list[StepEntry], ops: list[dict[str, Any]]) -> None:
    """A step undone by a rollback is undone by this host's own undo, and a host's undo is its steps'."""
    rollbacks = [
        (s, step.undo) for s, step in enumerate(program) if step.undo is not None and ops[step.undo]["op"] == "rollback"
    ]
    for s, undo in rollbacks:
        if undo != host.undo:
            raise PlanFileError(
                ("hosts", h, "undo"),
                f"step {program[s].id!r} of programs[{host.program}] is undone by operations[{undo}], not by this "
                f"host's undo ({'none' if host.undo is None else f'operations[{host.undo}]'}): another host's rollback",
            )
    if host.undo is not None and not rollbacks:
        raise PlanFileError(("hosts", h, "undo"), f"none of the steps of programs[{host.program}] is undone by it")


def _in_range(loc: Loc, index: int, size: int, table: str) -> None:
    if index >= size:
        shown = f"0–{size - 1}" if size else "none: it is empty"
        raise PlanFileError(loc, f"{index} is not an index of {table} ({shown})")


def dotted(loc: Loc) -> str:
    """``hosts[3].undo``: a JSON path as the refusal names it."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"
