"""`upgrader promote RUN`: let a run waiting at a manual gate go on (recorded with your name)."""

from __future__ import annotations

import argparse

from upgrader.commands import decide
from upgrader.engine.gates import DecisionKind

HELP = "continue a run that waits at a manual gate (canary promote, next datacenter)"

EPILOG = """\
A promote is for the gate the run waits at now: the run sees it within a second, and this command
waits (--wait, default 10 s) to tell you what the run did with it. A promote naming another gate is
refused. To approve a later gate before the run reaches it, say so with --ahead and --gate: the
pre-approval is audited, journaled, and shown by `upgrader show` and `upgrader report`.

examples:
  upgrader promote 20261205T070000Z-ordergw-1a2b --reason "fills and latency normal on ny5-oe01"
  upgrader promote 20261205T070000Z-ordergw-1a2b --gate promote-ch2 --ahead --reason "INC-12 sign-off"

exit codes: 0 the run passed the gate (or was pre-approved, or has not looked yet); 1 refused (no such
run, finished or halted, not waiting at that gate), or the run went another way first (an abort);
2 usage
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    decide.add_arguments(parser, EPILOG, reason_required=False)
    parser.add_argument("--gate", help="the gate to promote (default: the one the run waits at now)")
    parser.add_argument(
        "--ahead",
        action="store_true",
        help="approve --gate before the run reaches it (audited; shown in show and report)",
    )


def run(args: argparse.Namespace) -> int:
    return decide.run(args, DecisionKind.PROMOTE)
