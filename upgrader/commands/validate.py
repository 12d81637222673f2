"""`upgrader validate PLAYBOOK... -i INVENTORY`: check inputs, change nothing."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from upgrader.cli.logs import say
from upgrader.commands import artifact_check
from upgrader.errors import InputError, Problem
from upgrader.loading.inputs import cross_problems, load_inventory, load_playbook
from upgrader.models.playbook import Windows
from upgrader.windows.overrides import market_problems  # the one market-code check (exchange_calendars' MICs)

HELP = "check playbooks and an inventory; report every problem as file:line:col"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("playbooks", nargs="*", type=Path, metavar="PLAYBOOK")
    parser.add_argument("-i", "--inventory", type=Path, required=True)
    parser.add_argument(
        "--artifacts",
        type=Path,
        help="artifact store: an artifact found there must have the playbook's sha256 "
        "(default: $UPGRADER_ARTIFACTS, else build/artifacts)",
    )
    parser.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="json: {ok, problems: [{file, line, column, message, hint}]} on stdout (exit 1 if any)",
    )


def run(args: argparse.Namespace) -> int:
    problems: list[Problem] = []
    inventory = None
    try:
        inventory = load_inventory(args.inventory)
    except InputError as exc:
        problems += exc.problems
    if inventory is not None:
        problems += market_problems(Windows(), None, inventory)
    for path in args.playbooks:
        try:
            playbook = load_playbook(path)
        except InputError as exc:
            problems += exc.problems
            continue
        problems += artifact_check.store_problems(playbook, artifact_check.store_of(args.artifacts))
        if inventory is not None:
            problems += cross_problems(playbook, inventory)
            problems += market_problems(playbook.model.windows, playbook, inventory)
    problems = list(dict.fromkeys(problems))  # each playbook's check repeats the inventory's markets
    if args.format == "json":
        json.dump(
            {"ok": not problems, "problems": [_as_dict(p) for p in problems]}, sys.stdout, indent=2, sort_keys=True
        )
        print()
        return 1 if problems else 0
    if problems:
        raise InputError(problems)
    say(args, f"ok: {len(args.playbooks)} playbook(s) and {args.inventory} are valid")
    return 0


def _as_dict(problem: Problem) -> dict[str, str | int | None]:
    where = problem.location
    return {
        "file": where.file,
        "line": where.line,
        "column": where.column,
        "message": problem.message,
        "hint": problem.hint,
    }
