"""`upgrader abort RUN --reason …`: stop a run; it starts no new host and rolls back per its policy."""

from __future__ import annotations

import argparse

from upgrader.commands import decide
from upgrader.engine.gates import DecisionKind

HELP = "stop a running upgrade: no new host is started, touched hosts are rolled back per the policy"

EPILOG = """\
The run sees the abort between hosts and at its gates; hosts in the middle of a step finish that step
first. The reason goes to the journal and the audit log with your name.

example:
  upgrader abort 20261205T070000Z-ordergw-1a2b --reason "INC-4711: rejects on ny5 after the canary"

exit codes: 0 recorded; 1 no such run, or it has already finished; 2 usage
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    decide.add_arguments(parser, EPILOG, reason_required=True)


def run(args: argparse.Namespace) -> int:
    return decide.run(args, DecisionKind.ABORT)
