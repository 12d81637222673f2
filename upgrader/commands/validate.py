"""`upgrader validate PLAYBOOK... -i INVENTORY`: check inputs, change nothing."""

from __future__ import annotations

import argparse
from pathlib import Path

from upgrader.errors import InputError, Problem
from upgrader.loading.inputs import cross_problems, load_inventory, load_playbook
from upgrader.models.playbook import Windows
from upgrader.windows.overrides import market_problems  # the one market-code check (exchange_calendars' MICs)

HELP = "check playbooks and an inventory; report every problem as file:line:col"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("playbooks", nargs="*", type=Path, metavar="PLAYBOOK")
    parser.add_argument("-i", "--inventory", type=Path, required=True)


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
        if inventory is not None:
            problems += cross_problems(playbook, inventory)
            problems += market_problems(playbook.model.windows, playbook, inventory)
    if problems:
        raise InputError(list(dict.fromkeys(problems)))  # each playbook's check repeats the inventory's markets
    print(f"ok: {len(args.playbooks)} playbook(s) and {args.inventory} are valid")
    return 0
