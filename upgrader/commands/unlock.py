"""`upgrader unlock COMPONENT -i INVENTORY --reason "..."`: release the host lock a run left behind."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from upgrader.cli.logs import say
from upgrader.commands import live, rollback, targeting
from upgrader.engine import unlock as engine_unlock
from upgrader.errors import RefusedError
from upgrader.journal import operator
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
    request = engine_unlock.Request(
        component=args.component,
        reason=reason,
        operator=operator(),
        hosts=hosts,
        root=load_playbook(args.playbook).model.install.root if args.playbook else "",
        limit=args.limit or None,
        argv=tuple(sys.argv[1:]),
        python=args.python,
    )
    pool = live.pool_for(inventory, args)
    try:
        result = engine_unlock.unlock_hosts(request, pool, args.state_dir)
    finally:
        pool.close()
    for host, held in result.freed.items():
        print(
            f"  {host:<20} unlocked (was held by {held.get('kind')} run {held.get('run')}, "
            f"{held.get('operator')}, since {held.get('since')})"
        )
    for host in result.stuck:
        print(f"  {host:<20} NOT unlocked: {result.hosts[host]['error']}")
    if result.stuck:
        print(
            "  a host where an upgrader program is still running is left as it is: run unlock again once it "
            "ends (a killed controller's agent finishes its current program), or take it over with "
            "`upgrader rollback`"
        )
    say(args, f"{result.message} (run {result.run_id})", error=bool(result.stuck))
    return int(result.code)
