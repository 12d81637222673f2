"""Many hosts' values, sent as groups of hosts whose values are identical: at fleet size a host costs its name.

A run's hosts mostly share a few states and details ("done", "on 2.0.0, verified"), so a map of 10,000
hosts to their fields (~100 B each) packs to the names and a few dozen groups.  Used for what a Temporal
run sends (policy_state.pack_hosts: the hosts' states between workflows and activities; temporal/packed.py:
the run-end record's hosts and the workflow's result).  No imports beyond the stdlib: `watch` reads it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

_NONE = object()
NO_DEFAULTS: Mapping[str, Any] = {}


def pack(items: Iterable[tuple[str, Mapping[str, Any]]], defaults: Mapping[str, Any] = NO_DEFAULTS) -> list[list[Any]]:
    """``(host, fields)`` grouped by identical fields, the fields at their ``defaults`` value left out:
    ``[[fields, [host, ...]], ...]`` in the order each group's first host comes, each group's hosts in
    their own order.  The values must be hashable (str, bool, None, numbers: what JSON carries flat)."""
    groups: dict[tuple[tuple[str, Any], ...], list[Any]] = {}
    for host, fields in items:
        kept = {k: v for k, v in fields.items() if defaults.get(k, _NONE) != v}
        key = tuple(sorted(kept.items()))
        groups.setdefault(key, [kept, []])[1].append(host)
    return list(groups.values())


def unpack(
    packed: Iterable[list[Any]], defaults: Mapping[str, Any] = NO_DEFAULTS
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``pack``'s hosts and fields again, for input this program made (``expand`` checks the shape)."""
    for kept, hosts in packed:
        fields = {**defaults, **kept}
        for host in hosts:
            yield host, fields


def expand(packed: Any, what: str, defaults: Mapping[str, Any] = NO_DEFAULTS) -> dict[str, dict[str, Any]]:
    """``pack``'s output from outside (a payload another process sent) as ``{host: fields}``, each host's
    own dict; ValueError for any other shape (not groups of an object and a list of names, a name that is
    not a string or comes twice), so nothing half-read is used.  ``what`` names it in the message."""
    if not isinstance(packed, list):
        raise ValueError(f"{what} must be a list of [fields, [host, ...]] groups, not {type(packed).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for n, group in enumerate(packed):
        if not (isinstance(group, list) and len(group) == 2 and isinstance(group[0], dict)):
            raise ValueError(f"{what}[{n}] must be [fields, [host, ...]] with fields an object")
        kept, hosts = group
        if not all(isinstance(k, str) for k in kept) or not isinstance(hosts, list):
            raise ValueError(f"{what}[{n}] must be [fields, [host, ...]] with string field names")
        for host in hosts:
            if not isinstance(host, str):
                raise ValueError(f"{what}[{n}] names a host that is not a string: {host!r:.60}")
            if host in out:
                raise ValueError(f"{what}[{n}] names host {host!r:.60} a second time")
            out[host] = {**defaults, **kept}
    return out
