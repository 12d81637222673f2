"""`upgrader promote RUN`: let a run waiting at a manual gate go on (recorded with your name)."""

from __future__ import annotations

import argparse

from upgrader.commands import decide
from upgrader.engine.gates import DecisionKind

HELP = "continue a run that waits at a manual gate (canary promote, next datacenter)"

EPILOG = """\
The run (in another terminal, or another operator's) waits at the gate and sees the decision within a
second. Without --gate the promote is for the gate the run waits at now.

example:
  upgrader promote 20261205T070000Z-ordergw-1a2b --reason "fills and latency normal on ny5-oe01"

exit codes: 0 recorded; 1 no such run, run finished, or not waiting at a gate; 2 usage
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    decide.add_arguments(parser, EPILOG, reason_required=False)
    parser.add_argument("--gate", help="the gate to promote (default: the one the run waits at now)")


def run(args: argparse.Namespace) -> int:
    return decide.run(args, DecisionKind.PROMOTE)
