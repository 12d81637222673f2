"""Emergency rollback: every selected host in parallel, one round trip each, verified, audited.

Works from what is on the hosts (the previous release is still staged, with the service and checks
it was installed with, recorded by the agent), so it needs neither the journal nor the artifact of
the bad release; ``spec``, when there is one, supplies the layout and the service for a release with
no record.  Each host decides, from its own records at the moment it runs, what it undoes
(agent.default_target): a host with nothing to undo says so and changes nothing.

Locks: every host's program takes the host lock over (ending an apply of the component in flight
there, which then stops as handed over) and releases it; after a failure the release is a second
program, sent once this controller has heard the failure, so the command leaves no lock behind, while a
controller that died meanwhile leaves the host locked by its open run.  A second rollback arriving
while one runs waits for it, and is refused on that host if it does not end within TAKEOVER_WAIT
(agent program_lock.ProgramLock.take_over).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from upgrader.defaults import ROLLBACK_TIMEOUT, SAFETY_MARGIN, TAKEOVER_SLACK, TAKEOVER_WAIT
from upgrader.engine import programs, remote
from upgrader.engine.groups import Unavailable
from upgrader.engine.pool import Pool
from upgrader.errors import ExitCode, TransportError
from upgrader.journal import Journal, controller
from upgrader.models.plan import GroupLimit
from upgrader.models.playbook import Playbook
from upgrader.planning import operations
from upgrader.vocabulary import Event


class End(StrEnum):
    """How one host ended an emergency rollback (what the exit code is derived from)."""

    ROLLED_BACK = "rolled-back"  # switched back and verified
    ALREADY_THERE = "already-there"  # --to named the release it runs: verified, nothing switched
    NOTHING_TO_DO = "nothing-to-do"  # nothing to undo (said why); nothing changed
    FAILED = "rollback-failed"  # it tried and did not end on a verified release: a human must look
    UNHEALTHY = "unhealthy"  # nothing to switch back: the release it runs does not start or pass its checks
    REFUSED = "refused"  # not touched: another rollback holds it, or the agent refused before stopping
    UNREACHABLE = "unreachable"
    WITHHELD = "withheld"  # not touched, so that its redundancy group stays within max_unavailable


OK_ENDS = frozenset({End.ROLLED_BACK, End.ALREADY_THERE, End.NOTHING_TO_DO})


@dataclass(frozen=True)
class HostOutcome:
    host: str
    ok: bool
    before: str | None
    after: str | None
    detail: str
    previous_holder: dict[str, Any] | None = None
    definition: str | None = None  # whose service and checks it used: "recorded", "sent" or "none"
    end: End = End.ROLLED_BACK
    changed: bool = False  # the host's current release or service was changed


def definition_for(spec: Playbook, version: str, source: str) -> dict[str, Any]:
    """What ``spec`` (a playbook *of* ``version``) says to run and check that release with."""
    op = operations.rollback_op(spec, version)
    return {"service": op["service"], "checks": op["checks"], "playbook": source}


def rollback_program(
    spec: Playbook | None,
    to: str | None,
    *,
    operator: str,
    reason: str,
    controller_id: str,
    undo: Mapping[str, Any] | None = None,
    definitions: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The ops every host of an emergency rollback runs: take the lock over, roll back, release it (after a
    failure, the controller sends the release once it has heard of the failure: see rollback_hosts).

    ``definitions``: version -> the service and checks of that version's own playbook; a release the
    host has no record of is verified with these, or with no checks (reported as not applicable), never
    with another release's.  ``undo``: which runs the default target undoes (agent.default_target).
    """
    lock = programs.lock_op(
        "handover", operator=operator, plan=None, kind="rollback", reason=reason, controller=controller_id
    )
    # The agent takes its program lock over from a program in flight (an apply's migrate, say): it waits
    # TAKEOVER_WAIT for that program to end its current operation, then kills it (agent.ProgramLock).
    lock["takeover_wait"] = TAKEOVER_WAIT
    release = programs.lock_op("release", operator=operator, plan=None, kind="rollback", controller=controller_id)
    service = operations.service(spec, to, defer=() if to else operations.AGENT_FILLS) if spec else None
    back: dict[str, Any] = {
        "op": "rollback",
        "to": to,
        "service": service,
        "checks": [],
        "recorded": True,
        "definitions": dict(definitions or {}),
        "step": "rollback",
    }
    if undo is not None:
        back["undo"] = dict(undo)
    return [lock, back, release]


def rollback_hosts(
    pool: Pool,
    spec: Playbook | None,
    hosts: list[str],
    journal: Journal,
    *,
    operator: str,
    reason: str,
    to: str | None,
    python: str = "python3",
    limit: int | None = None,
    groups: Iterable[GroupLimit] = (),
    root: str | None = None,
    undo: Mapping[str, Mapping[str, Any]] | None = None,
    definitions: Mapping[str, Mapping[str, Any]] | None = None,
    component: str | None = None,
) -> dict[str, HostOutcome]:
    """``groups``: redundancy groups (engine/groups.py); their members go back at most max_unavailable at a time.

    ``root``: the install root ("" or None without ``spec``: each host's own record); ``undo``: per host,
    what its default target undoes (None: the release before the run that installed the current one).
    ``component``: needed without ``spec``.
    """
    name = component or (spec.component if spec else None)
    if name is None:
        raise ValueError("rollback_hosts needs spec or component")
    where = root if root is not None else (spec.install.root if spec else "")
    cid = controller()
    timeout = (
        (programs.hop_timeout(spec) if spec else ROLLBACK_TIMEOUT) + SAFETY_MARGIN + TAKEOVER_WAIT + TAKEOVER_SLACK
    )

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
        ops = rollback_program(
            spec,
            to,
            operator=operator,
            reason=reason,
            controller_id=cid,
            undo=(undo or {}).get(host) if undo is not None else None,
            definitions=definitions,
        )
        journal.record(Event.HOST_BEGIN, host=host, steps=["lock-handover", "rollback", "lock-release"], to=to)
        res = pool.session(host).call(
            component=name, root=where, run=journal.run_id, ops=ops, timeout=timeout, python=python
        )
        handed = res.op("lock")
        if not res.ok and handed is not None and handed.ok and not any(o.op == "lock" for o in res.ops[1:]):
            # A failed rollback's lock is released only once this controller has heard of the failure: a
            # controller that died meanwhile leaves the host locked by its open run (what `status` shows and
            # the next rollback takes over), not unlocked on no verified release with no one told.
            try:
                more = pool.session(host).call(
                    component=name, root=where, run=journal.run_id, ops=ops[-1:], timeout=timeout, python=python
                )
            except TransportError:  # gone since it answered: its failure stands, its lock stays (said so)
                more = None
            if more is not None:
                res = dataclasses.replace(res, ops=[*res.ops, *more.ops])
        journal.record(
            Event.HOST_END,
            host=host,
            ok=res.ok,
            ops=[o.data for o in res.ops],
            stderr=res.result.stderr[-2000:] if not res.ok else "",
        )
        return res

    results = pool.each(hosts, one, limit=limit)
    return {host: outcome(host, results[host].value, results[host].error, journal) for host in hosts}


def outcome(host: str, res: remote.AgentResult | None, error: BaseException | None, journal: Journal) -> HostOutcome:
    """One host's end, from its program's answer (see End)."""
    if isinstance(error, Withheld):  # its group has members down that did not come back
        journal.record(Event.HOST_WITHHELD, host=host, reason=str(error))
        return HostOutcome(host, False, None, None, f"not rolled back: {error}", end=End.WITHHELD)
    if res is None:
        journal.record(Event.HOST_END, host=host, ok=False, error=str(error))
        return HostOutcome(host, False, None, None, f"unreachable: {error}", end=End.UNREACHABLE)
    handed = res.op("lock")
    holder = handed.data.get("previous_holder") if handed and handed.ok else None
    back = res.op("rollback")
    data = back.data if back else {}
    used = data.get("definition")
    source = str(used.get("source")) if isinstance(used, dict) else None
    if back is None:  # the lock was not taken (another rollback holds the host): nothing ran
        return HostOutcome(host, False, None, None, f"refused: {res.error}", holder, end=End.REFUSED)
    if back.ok:
        if data.get("nothing"):
            return HostOutcome(
                host,
                True,
                data.get("from"),
                data.get("to"),
                f"nothing to do: {data.get('reason')}",
                holder,
                end=End.NOTHING_TO_DO,
            )
        steps = data.get("steps") or []
        na = used.get("not_applicable") if isinstance(used, dict) else None
        verified = "verified" + (f" (checks not applicable: {na})" if na else "")
        if "switch" in steps:
            return HostOutcome(
                host, True, data.get("from"), data.get("to"), verified, holder, source, End.ROLLED_BACK, True
            )
        return HostOutcome(
            host,
            True,
            data.get("from"),
            data.get("to"),
            "already there, " + verified + (" (service started)" if steps else ""),
            holder,
            source,
            End.ALREADY_THERE,
            bool(steps),
        )
    refused = bool(data.get("refused"))  # the agent refused before stopping anything: the host is as it was
    release = next((o for o in res.ops[1:] if o.op == "lock"), None)
    unlocked = " (lock released)" if release is not None and release.ok else ""
    if data.get("unhealthy"):  # nothing to undo, yet the release it runs is down or fails its checks
        return HostOutcome(
            host,
            False,
            data.get("from"),
            data.get("to"),
            f"nothing to roll back, but {data.get('to')} is unhealthy here: {res.error}{unlocked}",
            holder,
            source,
            End.UNHEALTHY,
            bool(data.get("steps")),
        )
    return HostOutcome(
        host,
        False,
        data.get("from") or data.get("current"),
        data.get("current"),
        f"{res.error}{unlocked}",
        holder,
        source,
        End.REFUSED if refused else End.FAILED,
        not refused,
    )


class Withheld(Exception):
    """A host not rolled back, so that its redundancy group stays within max_unavailable."""


def exit_code(outcomes: dict[str, HostOutcome]) -> ExitCode:
    """0: every host rolled back and verified, already there, or with nothing to undo; else 4 (a human must act:
    each host not in one of those states is named)."""
    return ExitCode.OK if all(o.end in OK_ENDS for o in outcomes.values()) else ExitCode.ROLLBACK_FAILED
