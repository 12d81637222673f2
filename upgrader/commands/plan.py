"""`upgrader plan PLAYBOOK -i INVENTORY`: what would happen, for people and for `apply`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from upgrader.commands.inputs import load_facts_for, load_inputs
from upgrader.errors import ExitCode
from upgrader.models.plan import Plan
from upgrader.planning.planner import facts_from_inventory, make_plan
from upgrader.planning.render import to_markdown, to_text

HELP = "compute the plan for a playbook (text, markdown or json)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("playbook", type=Path)
    parser.add_argument("-i", "--inventory", type=Path, required=True)
    parser.add_argument("--facts", type=Path, help="facts file from `upgrader facts --out` (default: inventory)")
    parser.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    parser.add_argument("--out", type=Path, help="write the plan to this file instead of stdout")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every step of every host")


def render(plan: Plan, fmt: str, verbose: bool = False) -> str:
    if fmt == "json":
        return plan.to_json()
    if fmt == "markdown":
        return to_markdown(plan)
    return to_text(plan, verbose=verbose)


def run(args: argparse.Namespace) -> int:
    inputs = load_inputs(args.playbook, args.inventory)
    facts = (load_facts_for(args.facts, inputs.inventory) if args.facts
             else facts_from_inventory(inputs.inventory.model))
    plan = make_plan(inputs.playbook.model, inputs.inventory.model, facts,
                     playbook_ref=inputs.playbook_ref(), inventory_ref=inputs.inventory_ref())
    text = render(plan, args.format, args.verbose)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out} ({plan.content_hash})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return int(ExitCode.REFUSED) if plan.problems else 0
