"""`upgrader runs`: the runs recorded in the state directory, newest last."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

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


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def run(args: argparse.Namespace) -> int:
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
