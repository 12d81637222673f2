"""Redundancy groups in the plan: no canary and no wave holds more than ``max_unavailable`` of a group.

Phases run one after the other, so a group whose members are spread over phases is never down beyond
its limit by the plan's doing; the engine (engine/groups.py) holds the same limit while hosts fail
and roll back.  Splitting is first fit, in the planner's order: each host goes to the earliest wave
with room that holds fewer than the limit of each of its groups.  Deterministic, and without groups
exactly the plain split into waves of ``size``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TypeVar

from upgrader.models.inventory import Inventory
from upgrader.models.plan import GroupLimit

T = TypeVar("T")
Membership = dict[str, tuple[tuple[str, int], ...]]  # host -> (group, max_unavailable) for each of its groups


def membership(inventory: Inventory) -> Membership:
    out: dict[str, list[tuple[str, int]]] = {}
    for name, group in inventory.groups.items():
        for host in dict.fromkeys(group.hosts):
            out.setdefault(host, []).append((name, group.max_unavailable))
    return {h: tuple(gs) for h, gs in out.items()}


def limits(inventory: Inventory, planned: Sequence[str]) -> list[GroupLimit]:
    """The inventory's groups by the members this plan upgrades (groups with none are left out)."""
    present = set(planned)
    out = []
    for name, group in inventory.groups.items():
        members = [h for h in dict.fromkeys(group.hosts) if h in present]
        if members:
            out.append(GroupLimit(name=name, hosts=members, max_unavailable=group.max_unavailable))
    return out


def pick(items: Sequence[T], count: int, groups: Membership, name: Callable[[T], str]) -> list[T]:
    """Up to ``count`` of ``items`` in order, skipping any that would put a group over its limit (canaries)."""
    chosen: list[T] = []
    held: Counter[str] = Counter()
    for item in items:
        if len(chosen) == count:
            break
        mine = groups.get(name(item), ())
        if all(held[g] < most for g, most in mine):
            chosen.append(item)
            held.update(g for g, _ in mine)
    return chosen


def split(hosts: Sequence[T], size: int, groups: Membership, name: Callable[[T], str]) -> list[list[T]]:
    """``hosts`` into waves of at most ``size``, none holding more than its limit of any group (first fit)."""
    if not any(name(h) in groups for h in hosts):
        return [list(hosts[start : start + size]) for start in range(0, len(hosts), size)]
    waves: list[list[T]] = []
    held: list[Counter[str]] = []
    skip: list[int] = []  # skip[w]: a wave at or after w that may still have room (path-compressed)

    def open_from(w: int) -> int:
        root = w
        while root < len(waves) and len(waves[root]) >= size:
            root = skip[root]
        while w < len(waves) and len(waves[w]) >= size and skip[w] != root:  # compress the path walked
            skip[w], w = root, skip[w]
        return root

    for host in hosts:
        mine = groups.get(name(host), ())
        w = open_from(0)
        while w < len(waves) and not all(held[w][g] < most for g, most in mine):
            w = open_from(w + 1)
        if w == len(waves):
            waves.append([])
            held.append(Counter())
            skip.append(w + 1)
        waves[w].append(host)
        held[w].update(g for g, _ in mine)
    return waves
