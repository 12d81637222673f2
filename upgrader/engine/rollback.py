"""Emergency rollback: every selected host in parallel, one round trip each, verified, audited.

Works from what is on the hosts (the previous release is still staged, with the service and checks
it was installed with, recorded by the agent), so it needs neither the journal nor the artifact of
the bad release; ``spec`` supplies the layout and the fallback definition for a release with no record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from upgrader.engine import programs, remote
from upgrader.engine.endpoints import Pool
from upgrader.engine.groups import Unavailable
from upgrader.engine.journal import Journal, controller
from upgrader.engine.vocabulary import Event
from upgrader.errors import ExitCode
from upgrader.models.plan import GroupLimit
from upgrader.models.playbook import Playbook

TAKEOVER_WAIT = 30.0  # seconds a host's program in flight gets to end its current operation


@dataclass(frozen=True)
class HostOutcome:
    host: str
    ok: bool
    before: str | None
    after: str | None
    detail: str
    previous_holder: dict[str, Any] | None = None
    definition: str | None = None  # whose service and checks it used: "recorded" (on the host) or "sent"


def rollback_program(spec: Playbook, to: str | None, *, operator: str, reason: str,
                     controller_id: str) -> list[dict[str, Any]]:
    """The ops every host of an emergency rollback runs: take the lock over, roll back, release it."""
    lock = programs.lock_op("handover", operator=operator, plan=None, kind="rollback", reason=reason,
                            controller=controller_id)
    # The agent takes its program lock over from a program in flight (an apply's migrate, say): it waits
    # TAKEOVER_WAIT for that program to end its current operation, then kills it (agent.ProgramLock).
    lock["takeover_wait"] = TAKEOVER_WAIT
    release = programs.lock_op("release", operator=operator, plan=None, kind="rollback", controller=controller_id)
    return [lock, programs.rollback_op(spec, to, "rollback"), release]


def rollback_hosts(pool: Pool, spec: Playbook, hosts: list[str], journal: Journal, *, operator: str,
                   reason: str, to: str | None, python: str = "python3",
                   limit: int | None = None, groups: Iterable[GroupLimit] = ()) -> dict[str, HostOutcome]:
    """``groups``: redundancy groups (engine/groups.py); their members go back at most max_unavailable at a time."""
    ops = rollback_program(spec, to, operator=operator, reason=reason, controller_id=controller())
    timeout = programs.hop_timeout(spec) + 30 + TAKEOVER_WAIT + 10  # + the kill and the kernel's unlock

    down = Unavailable(groups)

    def one(host: str) -> remote.AgentResult:
        reason = down.take(host)
        if reason is not None:
            raise Withheld(reason)
        try:
            res = roll_back(host)
        except BaseException:
            down.stuck(host)  # unknown: counted down for the rest of the rollback
            raise
        (down.back if res.ok else down.stuck)(host)
        return res

    def roll_back(host: str) -> remote.AgentResult:
        journal.record(Event.HOST_BEGIN, host=host, steps=["lock-handover", "rollback", "lock-release"], to=to)
        res = remote.call(pool.session(host), component=spec.component, root=spec.install.root, run=journal.run_id,
                          ops=ops, timeout=timeout, python=python)
        journal.record(Event.HOST_END, host=host, ok=res.ok, ops=[o.data for o in res.ops],
                       stderr=res.result.stderr[-2000:] if not res.ok else "")
        return res

    results = pool.each(hosts, one, limit=limit)
    out: dict[str, HostOutcome] = {}
    for host in hosts:
        res = results[host].value
        if isinstance(results[host].error, Withheld):  # its group has members down that did not come back
            journal.record(Event.HOST_WITHHELD, host=host, reason=str(results[host].error))
            out[host] = HostOutcome(host, False, None, None, f"not rolled back: {results[host].error}")
            continue
        if res is None:
            journal.record(Event.HOST_END, host=host, ok=False, error=str(results[host].error))
            out[host] = HostOutcome(host, False, None, None, f"unreachable: {results[host].error}")
            continue
        handed = res.op("lock")
        holder = handed.data.get("previous_holder") if handed and handed.ok else None
        back = res.op("rollback")
        data = back.data if back else {}
        used = data.get("definition")
        source = str(used.get("source")) if isinstance(used, dict) else None
        if res.ok:
            out[host] = HostOutcome(host, True, data.get("from"), data.get("to"),
                                    "verified" if data.get("steps") else "already there, verified", holder, source)
        else:
            out[host] = HostOutcome(host, False, data.get("from") or data.get("current"), data.get("current"),
                                    res.error, holder, source)
    return out


class Withheld(Exception):
    """A host not rolled back, so that its redundancy group stays within max_unavailable."""


def exit_code(outcomes: dict[str, HostOutcome]) -> ExitCode:
    return ExitCode.OK if all(o.ok for o in outcomes.values()) else ExitCode.ROLLBACK_FAILED
