"""Redundancy groups while the run executes: never more than ``max_unavailable`` members down at once.

A host counts as down from the start of its live program (stop, switch, start, checks) until it is
verified — on the new release, or back on its old one after a rollback.  A host that failed stays
down until its rollback is verified; one whose rollback failed, or that is held for a human, stays
down for the rest of the run ("stuck").  The planner already keeps each wave within the limits
(planning/groups.py), so a host mostly waits here in rollbacks, which run in parallel.

A host takes all of its groups' slots at once or none (no hold-and-wait, so no deadlock between
groups).  A host whose group is full of stuck members will never get a slot: ``take`` says so
at once instead of waiting for ever, and that host is neither started nor rolled back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from upgrader.models.plan import GroupLimit

POLL = 0.5  # seconds between looks at ``give_up`` while waiting for a slot


class Unavailable:
    def __init__(self, limits: Iterable[GroupLimit]) -> None:
        self._limit: dict[str, int] = {}
        self._of: dict[str, list[str]] = {}
        for g in limits:
            self._limit[g.name] = g.max_unavailable
            for host in g.hosts:
                self._of.setdefault(host, []).append(g.name)
        self._down: dict[str, set[str]] = {g: set() for g in self._limit}
        self._stuck: set[str] = set()
        self._awaiting: set[str] = set()  # failed in the current phase: down until its rollback after the phase
        self._cond = threading.Condition(threading.RLock())  # try_take within take

    def grouped(self, host: str) -> bool:
        return host in self._of

    def take(
        self, host: str, *, force: bool = False, in_phase: bool = False, give_up: Callable[[], bool] = lambda: False
    ) -> str | None:
        """Count ``host`` as down, waiting while one of its groups is at its limit; None once it is counted.

        ``force``: it is down already (it failed, or nobody knows), so it is counted without waiting.
        Otherwise the reason it may not go down: its group's down members are all stuck, or ``give_up()``.
        ``in_phase``: the host is about to start within a phase, whose failed hosts are rolled back only
        after the phase ends, so a slot held by one of them is not waited for either (that wait would
        never end: the phase waits for this host).
        """
        with self._cond:
            while True:
                got = self.try_take(host, force=force, in_phase=in_phase)
                if got is True:
                    return None
                if isinstance(got, str):
                    return got
                if give_up():
                    return "stopped while waiting for a slot in group " + self.full(host)[0]
                self._cond.wait(POLL)

    def full(self, host: str) -> list[str]:
        """``host``'s groups that are at their limit without it."""
        return [g for g in self._of.get(host, ()) if len(self._down[g] - {host}) >= self._limit[g]]

    def try_take(self, host: str, *, force: bool = False, in_phase: bool = False) -> bool | str:
        """``take`` without waiting: True once counted, False if it must wait for a slot, else why never.

        For a caller that waits its own way (the run policy, engine/policy.py: its drivers wait for
        another program of the run to move)."""
        groups = self._of.get(host)
        if not groups:
            return True
        with self._cond:
            full = self.full(host)
            if not full or force:
                for g in groups:
                    self._down[g].add(host)
                return True
            lost = self._stuck | self._awaiting if in_phase else self._stuck
            hopeless = [g for g in full if self._down[g] - {host} <= lost]
            if hopeless:
                g = hopeless[0]
                return (
                    f"group {g} has {len(self._down[g])} member(s) down that this run cannot bring back "
                    f"({', '.join(sorted(self._down[g]))}), its limit is {self._limit[g]}"
                )
            return False

    def back(self, host: str) -> None:
        """``host`` is up and verified again."""
        with self._cond:
            for g in self._of.get(host, ()):
                self._down[g].discard(host)
            self._stuck.discard(host)
            self._awaiting.discard(host)
            self._cond.notify_all()

    def failed(self, host: str) -> None:
        """``host`` failed in the current phase: down until its rollback, which comes after the phase."""
        if host not in self._of:
            return
        with self._cond:
            self._awaiting.add(host)
            self._cond.notify_all()

    def stuck(self, host: str) -> None:
        """``host`` stays down for the rest of the run (rollback failed, held for a human)."""
        if host not in self._of:
            return
        with self._cond:
            self._stuck.add(host)
            self._awaiting.discard(host)
            self._cond.notify_all()

    def is_down(self, host: str) -> bool:
        with self._cond:
            return any(host in self._down[g] for g in self._of.get(host, ()))

    def to_dict(self) -> dict[str, Any]:
        """Who is down now, as JSON (the limits are the plan's): what a Temporal child workflow is handed."""
        with self._cond:
            return {
                "down": {g: sorted(hosts) for g, hosts in sorted(self._down.items()) if hosts},
                "stuck": sorted(self._stuck),
                "awaiting": sorted(self._awaiting),
            }

    def load(self, data: dict[str, Any]) -> None:
        """Take over ``to_dict``'s state (of groups this plan has: another plan's names are ignored)."""
        with self._cond:
            down = data.get("down", {})
            self._down = {g: set(down.get(g, ())) for g in self._limit}
            self._stuck, self._awaiting = set(data.get("stuck", ())), set(data.get("awaiting", ()))
            self._cond.notify_all()

    def down_first(self, hosts: list[str]) -> list[str]:
        """``hosts`` with those counted down already first, so that they are rolled back (and free their slots)
        before any host that must wait for one takes a worker.  Unchanged when no host is grouped."""
        if not any(h in self._of for h in hosts):
            return hosts
        return sorted(hosts, key=lambda h: not self.is_down(h))
