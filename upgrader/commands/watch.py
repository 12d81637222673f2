"""`upgrader watch RUN`: reattach the live view of a Temporal run (after the starting client went away)."""

from __future__ import annotations

import argparse

from upgrader.commands import durable, live

HELP = "follow a Temporal run live until it ends; its exit code is the run's"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN")
    live.add_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return durable.watch(args, args.run_id)
