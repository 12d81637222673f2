"""`upgrader runs`: the runs recorded in the state directory, newest last."""

from __future__ import annotations

import argparse

from upgrader.engine.journal import list_runs

HELP = "list recorded runs (apply, resume, rollback)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--last", type=int, default=20, help="how many to show")


def run(args: argparse.Namespace) -> int:
    runs = list_runs(args.state_dir)[-args.last:]
    if not runs:
        print(f"no runs in {args.state_dir}")
        return 0
    for r in runs:
        code = "-" if r.exit_code is None else str(r.exit_code)
        print(f"{r.run_id:<42} {r.kind:<9} {r.component:<14} {r.status:<20} exit={code:<3} {r.operator}")
    return 0
