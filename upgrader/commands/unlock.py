"""`upgrader unlock COMPONENT -i INVENTORY --reason "..."`: release the host lock a run left behind."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from upgrader.cli.logs import say
from upgrader.commands import live, rollback, targeting
from upgrader.engine import remote
from upgrader.engine.journal import Journal, audit, controller, new_run_id, operator
from upgrader.engine.programs import lock_op
from upgrader.engine.vocabulary import Event, RunStatus
from upgrader.errors import ExitCode, RefusedError
from upgrader.loading.inputs import load_inventory, load_playbook

HELP = "release the host lock of COMPONENT that a run left behind (audited), instead of --break-lock on the next apply"

EPILOG = """\
Removes COMPONENT's host lock on every selected host, whoever holds it, and names the run that held
it. A host where an upgrader program is running at that moment is not unlocked (it is named): end that
run first (`upgrader abort`, or `upgrader rollback`). A run whose lock is removed stops at its next step
on that host, as after an emergency rollback's handover. Journaled as a run of kind "unlock", and written
to the audit log with your name and reason. No playbook is needed: each host records where COMPONENT lives.

example:
  upgrader unlock ordergw -i inventories/prod-na.yml --reason "INC-4711: run killed with its host" --limit ny5-oe01

exit codes: 0 every selected host is unlocked (or was not locked); 1 bad input; 2 usage; 4 some host is
still locked or could not be reached (named)
"""

TIMEOUT = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("component")
    parser.add_argument("-i", "--inventory", type=Path, required=True)
    parser.add_argument("--reason", required=True, help="why (journaled and audited)")
    targeting.add_argument(parser)
    parser.add_argument(
        "--playbook", type=Path, help="playbook for the component's install root (default: each host's own record)"
    )
    live.add_connection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    reason = args.reason.strip()
    if not reason:
        raise RefusedError("--reason must say why (it is journaled and audited)", 'e.g. --reason "INC-4711"')
    inventory = load_inventory(args.inventory)
    hosts = rollback.select_hosts(inventory, args.component, targeting.select(args, inventory))
    root = load_playbook(args.playbook).model.install.root if args.playbook else ""
    who = operator()
    run_id = new_run_id(args.component, datetime.now(UTC))
    journal = Journal.create(args.state_dir, run_id)
    journal.record(
        Event.RUN_START,
        kind="unlock",
        run=run_id,
        component=args.component,
        reason=reason,
        operator=who,
        hosts=hosts,
        limit=args.limit or None,
        argv=sys.argv[1:],
    )
    audit(
        args.state_dir, action="unlock", run=run_id, component=args.component, reason=reason, operator=who, hosts=hosts
    )
    op = lock_op("unlock", operator=who, plan=None, kind="unlock", reason=reason, controller=controller())
    pool = live.pool_for(inventory, args)
    try:

        def one(host: str) -> remote.AgentResult:
            return pool.session(host).call(
                component=args.component,
                root=root,
                run=run_id,
                ops=[op],
                timeout=TIMEOUT,
                python=args.python,
            )

        results = pool.each(hosts, one)
    finally:
        pool.close()
    lines: dict[str, dict[str, Any]] = {}
    for host in hosts:
        res = results[host].value
        if res is None or not res.ok:
            error = str(results[host].error) if res is None else res.error
            lines[host] = {"unlocked": False, "error": error}
        else:
            data = res.ops[0].data
            lines[host] = {"unlocked": True, "held_by": data.get("holder")}
        journal.record(
            Event.HOST_END,
            host=host,
            ok=lines[host]["unlocked"],
            **{k: v for k, v in lines[host].items() if k != "unlocked"},
        )
    stuck = [h for h, r in lines.items() if not r["unlocked"]]
    freed = {h: r["held_by"] for h, r in lines.items() if r.get("held_by")}
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
        args.state_dir,
        action="unlock-end",
        run=run_id,
        exit_code=int(code),
        failed=stuck,
        released={
            h: {"run": (r or {}).get("run"), "kind": (r or {}).get("kind"), "operator": (r or {}).get("operator")}
            for h, r in freed.items()
        },
    )
    for host, held in freed.items():
        print(
            f"  {host:<20} unlocked (was held by {held.get('kind')} run {held.get('run')}, "
            f"{held.get('operator')}, since {held.get('since')})"
        )
    for host in stuck:
        print(f"  {host:<20} NOT unlocked: {lines[host]['error']}")
    if stuck:
        print(
            "  a host where an upgrader program is still running is left as it is: run unlock again once it "
            "ends (a killed controller's agent finishes its current program), or take it over with "
            "`upgrader rollback`"
        )
    say(args, f"{message} (run {run_id})", error=bool(stuck))
    return int(code)
