"""Releasing the host locks a run left behind: journaled as a run of kind "unlock", audited.

commands/unlock.py selects the hosts and prints; ``unlock_hosts`` journals and audits the run
before any host is sent the unlock, sends it to every host in parallel, and journals and audits each
host's answer and the run's end.  A host where an upgrader program is running is not unlocked: the
agent refuses, and the host is named in ``Result.stuck``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from upgrader.engine import remote
from upgrader.engine.pool import Pool
from upgrader.engine.programs import lock_op
from upgrader.errors import ExitCode
from upgrader.journal import Journal, audit, controller, new_run_id
from upgrader.vocabulary import Event, RunStatus

TIMEOUT = 30.0  # one host's unlock program


@dataclass(frozen=True)
class Request:
    component: str
    reason: str
    operator: str
    hosts: list[str]
    root: str = ""  # the install root; "": each host's own record
    limit: list[str] | None = None
    argv: tuple[str, ...] = ()
    python: str = "python3"


@dataclass(frozen=True)
class Result:
    """Per host: {"unlocked": bool, "held_by": the lock's holder, or "error"}; the exit code and summary."""

    run_id: str
    hosts: dict[str, dict[str, Any]]
    code: ExitCode
    message: str

    @property
    def stuck(self) -> list[str]:
        """Hosts still locked, or not reached."""
        return [h for h, r in self.hosts.items() if not r["unlocked"]]

    @property
    def freed(self) -> dict[str, dict[str, Any]]:
        """Host -> who held the lock that was removed (kind, run, operator, since)."""
        return {h: r["held_by"] for h, r in self.hosts.items() if r.get("held_by")}


def unlock_hosts(request: Request, pool: Pool, state: Path) -> Result:
    """Remove ``request.component``'s host lock on every host of ``request``, whoever holds it (see module doc)."""
    r = request
    run_id = new_run_id(r.component, datetime.now(UTC))
    journal = Journal.create(state, run_id)
    journal.record(
        Event.RUN_START,
        kind="unlock",
        run=run_id,
        component=r.component,
        reason=r.reason,
        operator=r.operator,
        hosts=r.hosts,
        limit=r.limit,
        argv=list(r.argv),
    )
    audit(
        state, action="unlock", run=run_id, component=r.component, reason=r.reason, operator=r.operator, hosts=r.hosts
    )
    op = lock_op("unlock", operator=r.operator, plan=None, kind="unlock", reason=r.reason, controller=controller())

    def one(host: str) -> remote.AgentResult:
        return pool.session(host).call(
            component=r.component,
            root=r.root,
            run=run_id,
            ops=[op],
            timeout=TIMEOUT,
            python=r.python,
        )

    results = pool.each(r.hosts, one)
    lines: dict[str, dict[str, Any]] = {}
    for host in r.hosts:
        res = results[host].value
        if res is None or not res.ok:
            error = str(results[host].error) if res is None else res.error
            lines[host] = {"unlocked": False, "error": error}
        else:
            lines[host] = {"unlocked": True, "held_by": res.ops[0].data.get("holder")}
        journal.record(
            Event.HOST_END,
            host=host,
            ok=lines[host]["unlocked"],
            **{k: v for k, v in lines[host].items() if k != "unlocked"},
        )
    stuck = [h for h, line in lines.items() if not line["unlocked"]]
    freed = {h: line["held_by"] for h, line in lines.items() if line.get("held_by")}
    code = ExitCode.ROLLBACK_FAILED if stuck else ExitCode.OK
    message = (f"unlocked {len(freed)} host(s)" if freed else "no host was locked") + (
        "; NOT unlocked: " + ", ".join(f"{h} ({lines[h]['error']})" for h in stuck) if stuck else ""
    )
    journal.record(
        Event.RUN_END,
        status=RunStatus.SUCCEEDED if not stuck else RunStatus.REFUSED,
        exit_code=int(code),
        message=message,
        hosts=lines,
    )
    audit(
        state,
        action="unlock-end",
        run=run_id,
        exit_code=int(code),
        failed=stuck,
        released={
            h: {
                "run": (held or {}).get("run"),
                "kind": (held or {}).get("kind"),
                "operator": (held or {}).get("operator"),
            }
            for h, held in freed.items()
        },
    )
    return Result(run_id, lines, code, message)
