"""`--limit PATTERN`: which inventory hosts a command works on.  Pure: patterns + hosts in, names out.

One resolver for every command (plan, apply, facts, status, audit, rollback, windows).  A pattern is

* a host name (``ny5-oe01``) or a glob of them (``ny5-oe*``, fnmatch, case-sensitive as names are);
* ``dc:NAME`` / ``role:NAME`` (globs allowed in NAME too): the hosts of that datacenter / with that role;
* ``failed:RUN``: the hosts that failed in run RUN (the caller reads the journal: ``failed`` below).

``--limit`` is repeatable *and* takes comma-separated patterns (``--limit dc:ny5,role:oe``, Ansible's
habit; scripts append ``--limit X`` instead): the selection is the union of all of them.  Every pattern
must match at least one inventory host, so a typo is an error, not a silently smaller run.
Host names cannot contain ':' or ',' (models/types.py NAME_RE), so the syntax is unambiguous.

Stdlib only: commands/early.py resolves a limit from its connection record before pydantic loads.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from upgrader.errors import RefusedError

if TYPE_CHECKING:
    from upgrader.models.inventory import Inventory

PREFIXES = ("dc", "role", "failed")
_VALUE_RE = re.compile(r"[A-Za-z0-9_.*?\[\]!-]{1,128}")  # names, globs, run ids; nothing else
_GLOB = frozenset("*?[")
MAX_PATTERNS = 1000


class LimitSyntaxError(ValueError):
    """A pattern that is not one: a usage error (exit 2), found before anything is read."""


class NoMatch(RefusedError):
    """A pattern that selects no host of the inventory (exit 1, nothing contacted)."""

    reference = "limit-matches-nothing"


@dataclass(frozen=True)
class Member:
    """What a pattern can match on: one inventory host."""

    name: str
    dc: str
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pattern:
    kind: str  # "host" (a name or a glob), "dc", "role" or "failed"
    value: str

    def __str__(self) -> str:
        return self.value if self.kind == "host" else f"{self.kind}:{self.value}"


@dataclass(frozen=True)
class Selection:
    """The patterns as given (normalised) and the hosts they select, in inventory order."""

    patterns: tuple[str, ...]
    hosts: tuple[str, ...]


def split(values: Iterable[str]) -> list[str]:
    """``--limit`` values → patterns: commas split, blanks dropped, duplicates dropped, order kept."""
    out: dict[str, None] = {}
    for value in values:
        for part in value.split(","):
            if part.strip():
                out[part.strip()] = None
    if len(out) > MAX_PATTERNS:
        raise LimitSyntaxError(f"more than {MAX_PATTERNS} --limit patterns")
    return list(out)


def parse(text: str) -> Pattern:
    """One pattern; LimitSyntaxError (with the fix) if it is not one."""
    kind, sep, value = text.partition(":")
    if not sep:
        kind, value = "host", text
    elif kind not in PREFIXES:
        raise LimitSyntaxError(
            f"--limit {text!r}: unknown prefix {kind!r}; use a host name or glob, dc:NAME, role:NAME or failed:RUN"
        )
    if not _VALUE_RE.fullmatch(value):
        raise LimitSyntaxError(
            f"--limit {text!r}: {value!r} is not a host name, glob or run id "
            "(letters, digits, '.', '_', '-', and * ? [ ] in globs)"
        )
    if kind == "failed" and _GLOB.intersection(value):
        raise LimitSyntaxError(f"--limit {text!r}: failed: takes one run id, not a glob (`upgrader runs` lists them)")
    return Pattern(kind, value)


def resolve(
    patterns: Sequence[str],
    members: Sequence[Member],
    failed: Callable[[str], Collection[str]] | None = None,
    *,
    where: str = "the inventory",
) -> Selection:
    """The hosts ``patterns`` select among ``members``; NoMatch naming the first pattern that selects none.

    ``failed(run)`` gives the names of the hosts that failed in run ``run`` (the caller reads its
    journal); only those that are also inventory members are selected, so a journal can never add
    a host.  ``where`` names the inventory in errors.
    """
    parsed = [parse(p) for p in split(patterns)]
    chosen: set[str] = set()
    for pattern in parsed:
        found = _matches(pattern, members, failed)
        if not found:
            raise NoMatch(f"--limit {pattern} matches no host in {where}", _hint(pattern, members))
        chosen |= found
    return Selection(tuple(str(p) for p in parsed), tuple(m.name for m in members if m.name in chosen))


def _matches(pattern: Pattern, members: Sequence[Member], failed: Callable[[str], Collection[str]] | None) -> set[str]:
    if pattern.kind == "failed":
        if failed is None:
            raise NoMatch(f"--limit {pattern}: no journal to read here", "name the hosts instead")
        names = set(failed(pattern.value))
        return {m.name for m in members if m.name in names}
    match = _matcher(pattern.value)
    if pattern.kind == "dc":
        return {m.name for m in members if match(m.dc)}
    if pattern.kind == "role":
        return {m.name for m in members if any(match(r) for r in m.roles)}
    return {m.name for m in members if match(m.name)}


def _matcher(value: str) -> Callable[[str], bool]:
    if _GLOB.intersection(value):
        return lambda name: fnmatch.fnmatchcase(name, value)
    return lambda name: name == value


def _hint(pattern: Pattern, members: Sequence[Member]) -> str:
    if pattern.kind == "dc":
        return "datacenters: " + _listed(m.dc for m in members)
    if pattern.kind == "role":
        return "roles: " + _listed(r for m in members for r in m.roles)
    if pattern.kind == "failed":
        return f"no host of this inventory failed in run {pattern.value}; see `upgrader show {pattern.value}`"
    return "check the name (`upgrader status` lists hosts), or use a glob such as 'ny5-*', dc:NAME or role:NAME"


def _listed(names: Iterable[str]) -> str:
    unique = sorted(set(names))
    return ", ".join(unique[:20]) + (f" … ({len(unique)})" if len(unique) > 20 else "") if unique else "none"


def members(inventory: Inventory) -> list[Member]:
    """The inventory's hosts, in its order, as patterns see them."""
    return [
        Member(name, dc_name, tuple(host.roles))
        for dc_name, dc in inventory.datacenters.items()
        for name, host in dc.hosts.items()
    ]
