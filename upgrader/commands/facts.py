"""`upgrader facts -i INVENTORY PLAYBOOK`: what is on the hosts now."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from upgrader.commands import live, targeting
from upgrader.commands.inputs import load_inputs
from upgrader.loading import output

HELP = "gather installed/staged versions, service state and free disk from the hosts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("playbook", type=Path, help="playbook of the component (for its layout and service)")
    parser.add_argument("-i", "--inventory", type=Path, required=True)
    parser.add_argument("--out", type=Path, help="write a facts file for `upgrader plan --facts`")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    targeting.add_argument(parser)
    live.add_connection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    output.check(args.out)  # before any host is asked
    inputs = load_inputs(args.playbook, args.inventory)
    selection = targeting.select(args, inputs.inventory)
    pool = live.pool_for(inputs.inventory, args)
    try:
        facts = live.live_facts(inputs, pool, args.python, selection.hosts if selection else None)
    finally:
        pool.close()
    text = json.dumps(facts.model_dump(mode="json", exclude_none=True), indent=2, sort_keys=True) + "\n"
    if args.out:
        output.write_text(args.out, text)
        print(f"wrote {args.out}", file=sys.stderr)
    if args.format == "json" and not args.out:
        sys.stdout.write(text)
    elif not args.out:
        comp = inputs.playbook.model.component
        for host, hf in facts.hosts.items():
            c = hf.components.get(comp)
            if not hf.reachable:
                print(f"{host:<20} UNREACHABLE  {hf.error}")
            elif c is not None:
                print(
                    f"{host:<20} {comp} {c.installed or '-':<12} service={c.service or '-':<9} "
                    f"reports={c.reported_version or '-':<12} staged={','.join(c.staged) or '-'} "
                    f"free={hf.free_disk_mb}MB" + (f" LOCKED by {c.lock.get('run')}" if c.lock else "")
                )
    return 0 if all(h.reachable for h in facts.hosts.values()) else 1
