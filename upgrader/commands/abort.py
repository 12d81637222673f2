"""`upgrader abort RUN --reason …`: stop a run; it starts no new host and puts back every host it changed."""

from __future__ import annotations

import argparse

from upgrader.commands import decide
from upgrader.engine.gates import DecisionKind

HELP = "stop a running upgrade: no new host starts, every host it changed goes back to its starting release"

EPILOG = """\
The run sees the abort within a second while it waits (a bake, a pause, a gate) and otherwise when
the host steps in flight end (a service is never left between its stop and its start). It then puts
every host it changed back on its starting release, verified, whatever its rollback policy (as an
Argo Rollouts abort does); with --keep the hosts already on the new release stay there, verified.
The reason goes to the journal and the audit log with your name.

example:
  upgrader abort 20261205T070000Z-ordergw-1a2b --reason "INC-4711: rejects on ny5 after the canary"

exit codes: 0 the run took the abort (or has not looked yet: see `upgrader show`); 1 refused (no such
run, or it has finished or halted), or it ended before it saw the abort; 2 usage. The run's own exit
code says where the hosts ended (README: Exit codes).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    decide.add_arguments(parser, EPILOG, reason_required=True)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave hosts already on the new release there (verified) instead of putting them back",
    )


def run(args: argparse.Namespace) -> int:
    return decide.run(args, DecisionKind.ABORT)
