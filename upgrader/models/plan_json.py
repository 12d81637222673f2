"""A plan's JSON text, built per host: the canonical form the hash covers, and the indented file.

The text is exactly ``json.dumps(plan.body(), sort_keys=True, ensure_ascii=False, ...)``, built
faster.  A large plan is mostly host step lists that differ only in the host name at the front
of each step id: each distinct list is encoded once, with a marker where the name goes, and
copied for every host that has it.  The indented form is laid out here rather than by json's
pure-Python indenting encoder (json still encodes every scalar), and nothing builds the plan's
data as dicts first: the work is mostly on strings, which the cyclic garbage collector does not
track.  tests/unit/test_plan_serialization.py holds both forms to ``json.dumps``.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring  # what json.dumps(..., ensure_ascii=False) writes strings with
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from upgrader.models.plan import HostPlan, Plan, Step

# Marks where a host's name goes in an encoded step list.  json escapes every control character
# inside strings, so a raw NUL is never part of its output: the marker cannot be mistaken.
_HOST = "\x00"


def plan_json(plan: Plan, *, indent: int | None = None, content_hash: str | None = None) -> str:
    """The plan's body, and ``content_hash`` when given, as JSON with sorted keys.

    ``indent=None`` is the canonical compact form (separators ``,`` and ``:``), otherwise
    json.dumps's indented form; no trailing newline.
    """
    writer = _Writer(indent)
    unset = {"limit"} if plan.limit is None else set()  # an unlimited plan's JSON is as before limits existed
    unset |= set() if plan.groups else {"groups"}  # nor has a plan without redundancy groups
    body = plan.model_dump(mode="json", exclude={"hosts", "content_hash", *unset})
    items = [(key, writer.value(value, 1)) for key, value in body.items()]
    items.append(("hosts", writer.array([writer.host(h, 2) for h in plan.hosts], 1)))
    if content_hash is not None:
        items.append(("content_hash", writer.value(content_hash, 1)))
    return writer.object(items, 0)


class _Writer:
    """Writes JSON in json.dumps's layout for one indent setting, from already encoded members.

    ``level`` is the nesting depth of the value being written (0 for the document itself).
    """

    def __init__(self, indent: int | None) -> None:
        self.indent = indent
        self.key_sep = ":" if indent is None else ": "
        # The encoder json.dumps(value, sort_keys=True, ensure_ascii=False, ...) would build.
        self.encode = json.JSONEncoder(
            sort_keys=True, ensure_ascii=False, indent=indent, separators=(",", self.key_sep)
        ).encode
        self.step_lists: dict[tuple[tuple[str | int | None, ...], ...], str] = {}

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
        if kind is list and (self.indent is not None or all(type(v) is str for v in value)):
            return self.array([self.value(v, level + 1) for v in value], level)
        if self.indent is None:  # anything nested, compact: json's C encoder is the fastest there is
            return self.encode(value)
        if kind is dict and all(type(key) is str for key in value):
            return self.object([(key, self.value(v, level + 1)) for key, v in value.items()], level)
        # A float, or something json converts first (non-string keys, tuples): json lays it out at
        # depth 0; encoded strings never hold a raw newline, so every "\n" is a line break to indent.
        return self.encode(value).replace("\n", "\n" + " " * (self.indent * level))

    def object(self, items: list[tuple[str, str]], level: int) -> str:
        """A JSON object of already encoded values, keys sorted as json.dumps sorts them."""
        return self._join(
            "{", [(encode_basestring(key) + self.key_sep, text) for key, text in sorted(items)], "}", level
        )

    def array(self, texts: list[str], level: int) -> str:
        return self._join("[", [("", text) for text in texts], "]", level)

    def _join(self, start: str, members: list[tuple[str, str]], end: str, level: int) -> str:
        if not members:
            return start + end
        if self.indent is None:
            inner = outer = ""
        else:
            inner, outer = "\n" + " " * (self.indent * (level + 1)), "\n" + " " * (self.indent * level)
        # One join, so the large members (all hosts) are copied once.
        parts = [start]
        for prefix, text in members:
            parts += (inner, prefix, text, ",")
        parts[-1] = outer + end
        return "".join(parts)

    def host(self, host: HostPlan, level: int) -> str:
        items = [(key, self.value(value, level + 1)) for key, value in host.to_dict(steps=False).items()]
        items.append(("steps", self.steps(host, level + 1)))
        return self.object(items, level)

    def steps(self, host: HostPlan, level: int) -> str:
        name = host.host
        if not all(step.id.startswith(name + "/") for step in host.steps):
            # Not the planner's "<host>/<nn>-<action>" ids (an edited plan): encode as it is.
            return self.array([self.value(step.to_dict(), level + 1) for step in host.steps], level)
        # The steps without the host name: hosts with the same key have the same list but for the name.
        # Operations are keyed by identity: the planner shares one object between the hosts that have
        # it (planning/steps.py), and every object is alive while the plan is, so equal ids mean equal
        # contents (distinct but equal objects, as in a plan read from a file, are only encoded apart).
        key = tuple(
            (step.id[len(name) :], step.action, step.version, id(step.op), id(step.undo), id(step.verify))
            for step in host.steps
        )
        if key not in self.step_lists:
            self.step_lists[key] = self.array([self._step(step, len(name), level + 1) for step in host.steps], level)
        return self.step_lists[key].replace(_HOST, encode_basestring(name)[1:-1])

    def _step(self, step: Step, name_length: int, level: int) -> str:
        fields = step.to_dict()
        # json escapes character by character, so the id's text is the name's text followed by the rest's.
        rest = encode_basestring(fields.pop("id")[name_length:])
        items = [(key, self.value(value, level + 1)) for key, value in fields.items()]
        items.append(("id", '"' + _HOST + rest[1:]))
        return self.object(items, level)
