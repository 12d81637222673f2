"""Load playbooks, inventories and facts files, with every semantic check located in the file."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from upgrader.errors import InputError, Location, Problem
from upgrader.loading import bounded_read, jsonpos, yamlfile
from upgrader.loading.validate import problems_from, validate
from upgrader.models.facts import Facts
from upgrader.models.inventory import Inventory
from upgrader.models.plan import SCHEMA_VERSION, Plan
from upgrader.models.plan_file import HINT as PLAN_HINT
from upgrader.models.plan_file import PlanFile, PlanFileError, plan_from_data
from upgrader.models.playbook import Playbook
from upgrader.planning.paths import PathGraph, Release
from upgrader.planning.sources import graph_of
from upgrader.windows import localtime

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Loaded(Generic[M]):
    """A validated model with the file it came from (for digests and error locations)."""

    model: M
    path: Path
    sha256: str
    doc: yamlfile.Document

    def at(self, *loc: str | int, key: bool = False) -> Location:
        return self.doc.locate(tuple(loc), key=key)


def _load(path: Path, model: type[M], kind: str) -> Loaded[M]:
    doc = yamlfile.load(path, kind)
    if not isinstance(doc.data, dict):
        raise InputError([Problem(doc.locate(()), "expected a mapping at the top level", "see the README")])
    value = validate(doc, model)
    digest = hashlib.sha256(doc.text.encode()).hexdigest()
    return Loaded(value, path, digest, doc)


def load_playbook(path: Path) -> Loaded[Playbook]:
    loaded = _load(path, Playbook, "playbook")
    problems = playbook_problems(loaded)
    if problems:
        raise InputError(problems)
    return loaded


def load_inventory(path: Path) -> Loaded[Inventory]:
    loaded = _load(path, Inventory, "inventory")
    problems = inventory_problems(loaded)
    if problems:
        raise InputError(problems)
    return loaded


def load_facts(path: Path) -> Loaded[Facts]:
    """Facts files are YAML or JSON (JSON is YAML); ``upgrader facts --out`` writes them."""
    return _load(path, Facts, "facts")


def playbook_problems(pb: Loaded[Playbook]) -> list[Problem]:
    p = pb.model
    problems: list[Problem] = []
    for issue in graph_of(p).issues():
        loc = ("via", issue.index, "upgrade_from") if issue.index is not None else ("upgrade_from",)
        problems.append(Problem(pb.at(*loc), issue.message, issue.hint))
    for i, check in enumerate(p.checks):
        if check.testinfra is not None and not (pb.path.parent / check.testinfra.file).is_file():
            problems.append(
                Problem(
                    pb.at("checks", i, "testinfra", "file"),
                    f"testinfra module {check.testinfra.file} not found next to {pb.path.name}",
                    "the path is relative to the playbook's directory",
                )
            )
    if p.component in p.requires:
        problems.append(
            Problem(
                pb.at("requires", p.component, key=True), f"{p.component} cannot require itself", "remove this entry"
            )
        )
    for i, window in enumerate(p.windows.maintenance):
        problems += _zone_problems(pb, window.timezone, ("windows", "maintenance", i, "timezone"))
    for i, freeze in enumerate(p.windows.freeze):
        problems += _zone_problems(pb, freeze.timezone, ("windows", "freeze", i, "timezone"))
    if p.service.systemd is None and p.service.status is None:  # pragma: no cover - model forbids
        problems.append(Problem(pb.at("service"), "service needs a status command"))
    return problems


def inventory_problems(inv: Loaded[Inventory]) -> list[Problem]:
    model = inv.model
    problems: list[Problem] = []
    seen_names: dict[str, str] = {}
    seen_endpoints: dict[tuple[str, int], str] = {}
    for dc_name, dc in model.datacenters.items():
        problems += _zone_problems(inv, dc.timezone, ("datacenters", dc_name, "timezone"))
        problems += _jump_problems(inv, dc_name)
        for host_name, host in dc.hosts.items():
            where = ("datacenters", dc_name, "hosts", host_name)
            if host_name in seen_names:
                problems.append(
                    Problem(
                        inv.at(*where, key=True),
                        f"host {host_name} is defined in both {seen_names[host_name]} and {dc_name}",
                        "host names must be unique across datacenters",
                    )
                )
            seen_names.setdefault(host_name, dc_name)
            endpoint = (host.address.lower(), host.port or model.defaults.port)
            if endpoint in seen_endpoints:
                problems.append(
                    Problem(
                        inv.at(*where, "address"),
                        f"{host_name} and {seen_endpoints[endpoint]} point at the same host "
                        f"{endpoint[0]}:{endpoint[1]}",
                        "one machine must have one name, or it would be upgraded twice",
                    )
                )
            seen_endpoints.setdefault(endpoint, host_name)
            for i, role in enumerate(host.roles):
                if role not in model.roles:
                    problems.append(
                        Problem(
                            inv.at(*where, "roles", i),
                            f"host {host_name} has role '{role}', which is not defined",
                            _suggest(role, model.roles, "define it under 'roles'"),
                        )
                    )
            if not (host.user or model.defaults.user):
                problems.append(
                    Problem(
                        inv.at(*where),
                        f"host {host_name} has no SSH user",
                        "set 'user' on the host or under 'defaults'",
                    )
                )
    return problems + _group_problems(inv, seen_names)


def _group_problems(inv: Loaded[Inventory], hosts: dict[str, str]) -> list[Problem]:
    """Redundancy groups name hosts the inventory defines, each once."""
    problems: list[Problem] = []
    for name, group in inv.model.groups.items():
        for i, member in enumerate(group.hosts):
            where = ("groups", name, "hosts", i)  # located only for a problem (yamlfile.Document.mark)
            if member in group.hosts[:i]:
                problems.append(
                    Problem(inv.at(*where), f"host {member} is listed twice in group {name}", "list each member once")
                )
            elif member not in hosts:
                problems.append(
                    Problem(
                        inv.at(*where),
                        f"group {name} names host {member}, which the inventory does not define",
                        _suggest(member, hosts, "use a host name from 'datacenters'"),
                    )
                )
    return problems


def _jump_problems(inv: Loaded[Inventory], dc_name: str) -> list[Problem]:
    """A datacenter's bastion is not one of the hosts behind it: each hop would tunnel through itself."""
    jump = inv.model.datacenters[dc_name].jump
    if jump is None:
        return []
    for host_name, host in inv.model.datacenters[dc_name].hosts.items():
        if host.address.lower() == jump.address.lower():
            return [
                Problem(
                    inv.at("datacenters", dc_name, "jump", "address"),
                    f"the jump host of {dc_name} is {host_name} ({host.address}), one of its own hosts",
                    "point jump at the bastion in front of the datacenter, not at a host behind it",
                )
            ]
    return []


def cross_problems(pb: Loaded[Playbook], inv: Loaded[Inventory]) -> list[Problem]:
    """Checks that need both files: datacenters named by the playbook, component roles."""
    problems: list[Problem] = []
    p, model = pb.model, inv.model
    for i, dc in enumerate(p.rollout.datacenter_order):
        if dc in p.rollout.datacenter_order[:i]:
            problems.append(
                Problem(
                    pb.at("rollout", "datacenter_order", i),
                    f"datacenter '{dc}' is listed twice in datacenter_order",
                    "list each datacenter once; its hosts are upgraded in one pass",
                )
            )
        elif dc not in model.datacenters:
            problems.append(
                Problem(
                    pb.at("rollout", "datacenter_order", i),
                    f"datacenter '{dc}' is not in inventory {inv.path}",
                    _suggest(dc, model.datacenters, "use a datacenter the inventory defines"),
                )
            )
    if not any(p.component in comps for comps in model.roles.values()):
        problems.append(
            Problem(
                pb.at("component"),
                f"no role in inventory {inv.path} runs component '{p.component}'",
                "add the component to a role under 'roles' in the inventory",
            )
        )
    return problems


def facts_problems(facts: Loaded[Facts], inv: Loaded[Inventory]) -> list[Problem]:
    problems: list[Problem] = []
    if facts.model.inventory != inv.model.name:
        problems.append(
            Problem(
                facts.at("inventory"),
                f"these facts were gathered from inventory '{facts.model.inventory}', not '{inv.model.name}'",
                "gather facts for this inventory with `upgrader facts`",
            )
        )
    known = {h for dc in inv.model.datacenters.values() for h in dc.hosts}
    for host in facts.model.hosts:
        if host not in known:
            problems.append(
                Problem(
                    facts.at("hosts", host, key=True),
                    f"host {host} is not in inventory {inv.path}",
                    "gather facts for this inventory with `upgrader facts`",
                )
            )
    return problems


def _zone_problems(src: Loaded[M], zone: str, loc: tuple[str | int, ...]) -> list[Problem]:
    if localtime.zone(zone) is None:
        return [Problem(src.at(*loc), f"unknown timezone {zone!r}", localtime.ZONE_HINT)]
    return []


def _suggest(word: str, choices: object, fallback: str) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1)  # type: ignore[call-overload]
    return f"did you mean '{close[0]}'?" if close else fallback


def parse_json_model(text: str, model: type[M], name: str) -> M:
    """Validate JSON text into a model; problems name the file.  A plan goes through read_plan_text:
    its file is tables and references, not the model's fields."""
    if model is Plan:
        return read_plan_text(text, name)  # type: ignore[return-value]
    data = parse_json_object(text, name)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        doc = yamlfile.Document(path=Path(name), data=data, text=text)
        raise InputError(problems_from(exc, doc, model)) from None


def parse_json_object(text: str, name: str) -> dict[str, Any]:
    """A JSON object, bounded in nesting, with no NaN/Infinity or integers of thousands of digits."""
    hint = "was the file edited by hand? write it again with `upgrader plan --out`"
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InputError([Problem(Location(name, exc.lineno, exc.colno), f"invalid JSON: {exc.msg}", hint)]) from None
    except RecursionError:
        raise InputError([Problem(Location(name), "JSON nested too deeply", hint)]) from None
    except ValueError as exc:  # NaN/Infinity, or an integer of thousands of digits
        raise InputError([Problem(Location(name), f"invalid JSON: {' '.join(str(exc).split())[:120]}", hint)]) from None
    if bounded_read.depth_of(data) > bounded_read.MAX_DEPTH:
        raise InputError([Problem(Location(name), f"JSON nested deeper than {bounded_read.MAX_DEPTH} levels", hint)])
    if not isinstance(data, dict):
        raise InputError([Problem(Location(name, 1, 1), f"expected a JSON object, got {type(data).__name__}", hint)])
    return data


def _no_constant(word: str) -> None:
    raise ValueError(f"{word} is not a number JSON allows")


def read_plan_file(path: Path) -> Plan:
    """A saved plan (``upgrader plan --out``, a run's plan.json), read within its size cap and validated.

    Every command that reads a plan file comes here, so each refuses a bad one the same way (InputError).
    """
    return read_plan_text(bounded_read.read_text(path, "plan"), str(path))


def read_plan_text(text: str, name: str) -> Plan:
    """A saved plan's text as a plan: its tables and references checked (models/plan_file.py).

    Problems name ``name`` and the JSON path of the bad value, with the fix, as for any input file.
    """
    data = parse_json_object(text, name)
    doc = yamlfile.Document(path=Path(name), data=data, text=text)
    try:
        return plan_from_data(data)
    except PlanFileError as exc:
        line, column = jsonpos.position(text, exc.loc)
        raise InputError([Problem(Location(name, line, column), exc.message, exc.hint)]) from None
    except ValidationError as exc:
        model = PlanFile if data.get("schema_version") == SCHEMA_VERSION else Plan
        for error in exc.errors()[:20]:  # where each problem is, for doc.locate (json gives no positions)
            loc = tuple(error["loc"])
            doc.marks[loc] = jsonpos.position(text, loc)
        problems = problems_from(exc, doc, model)
        raise InputError([p if p.hint else Problem(p.location, p.message, PLAN_HINT) for p in problems]) from None


__all__ = [
    "Loaded",
    "PathGraph",
    "Release",
    "load_facts",
    "load_inventory",
    "load_playbook",
    "read_plan_file",
    "read_plan_text",
]
