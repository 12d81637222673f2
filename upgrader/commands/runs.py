"""`upgrader runs`: the runs recorded in the state directory, newest last; or, with --engine temporal,
the Temporal runs of every controller, found on the server by their search attributes (temporal/search.py)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from upgrader.journal import list_runs

HELP = "list recorded runs (apply, resume, rollback)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--last", type=_positive, default=20, help="how many to show")
    parser.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="json: one array of runs, damaged ones with their problem",
    )
    parser.add_argument(
        "--engine",
        choices=("local", "temporal"),
        default="local",
        help="local (default): the runs in --state-dir; temporal: every controller's Temporal runs, "
        "as the server lists them",
    )
    parser.add_argument(
        "-i", "--inventory", type=Path, help="with --engine temporal: the inventory naming the server (engine:)"
    )
    from upgrader.temporal import settings

    settings.add_arguments(parser)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def run(args: argparse.Namespace) -> int:
    if args.engine == "temporal":
        return _temporal(args)
    runs = list_runs(args.state_dir)[-args.last :]
    if args.format == "json":
        json.dump([dataclasses.asdict(r) for r in runs], sys.stdout, indent=2, sort_keys=True)
        print()
        return 0
    if not runs:
        print(f"no runs in {args.state_dir}")
        return 0
    for r in runs:
        if r.problem:  # listed, so it can be found and moved aside; the others are unaffected
            print(f"{r.run_id:<42} DAMAGED   {r.problem}")
            print(f"warning: run {r.run_id}: {r.problem}", file=sys.stderr)
            continue
        code = "-" if r.exit_code is None else str(r.exit_code)
        print(f"{r.run_id:<42} {r.kind:<9} {r.component:<14} {r.status:<20} exit={code:<3} {r.operator}")
    return 0


def _temporal(args: argparse.Namespace) -> int:
    import asyncio

    from upgrader.loading.inputs import load_inventory
    from upgrader.temporal import client, settings

    inventory = load_inventory(args.inventory).model if args.inventory else None
    found = settings.resolve(args, inventory, args.inventory)

    async def ask() -> list[dict[str, Any]]:
        return await client.listed(await client.connect(found), args.last)

    runs = asyncio.run(ask())
    if args.format == "json":
        json.dump(runs, sys.stdout, indent=2, sort_keys=True)
        print()
        return 0
    if not runs:
        print(f"no upgrader runs on {found.address} ({found.namespace})")
        return 0
    for r in runs:
        print(
            f"{r['run']:<42} {r['component'] or '?':<14} {r['version'] or '?':<10} {r['status']:<20} "
            f"{r['phase'] or '-':<22} {r['operator'] or '?'} [{','.join(r['datacenters'])}]"
        )
    return 0
