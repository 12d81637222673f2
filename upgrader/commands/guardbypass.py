"""`--now T --reason R` on apply and resume: a simulated clock is a way past the window guard, so it is break-glass.

`--now` once let `apply` upgrade live hosts during market hours with no reason and no record.  A
simulated time belongs to `upgrader windows --now` (a preview) and to tests; on a command that
changes hosts it is a guard override like an emergency rollback's: it needs a reason, is journaled,
written to the audit log and notified (the same :func:`upgrader.windows.break_glass` record).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from upgrader.errors import RefusedError
from upgrader.journal import audit
from upgrader.models.inventory import Inventory
from upgrader.models.playbook import Playbook
from upgrader.windows import BreakGlass, break_glass

NOTIFY_KIND = "guard-bypassed"


def wall_clock() -> datetime:
    """The real time (a seam: tests stand it in market hours)."""
    return datetime.now(UTC)


def add_arguments(parser: argparse.ArgumentParser, aware: Callable[[str], datetime]) -> None:
    parser.add_argument(
        "--now",
        type=aware,
        metavar="T",
        help="tell the window guard it is T (ISO 8601 with offset): a guard override (break-glass), "
        "so it needs --reason and is journaled, audited and notified; to preview T, use "
        "`upgrader windows --now T`",
    )
    parser.add_argument(
        "--reason", metavar="TEXT", help="why the window guard is overridden (with --now): journaled, audited, notified"
    )


def check(args: argparse.Namespace) -> None:
    """Before anything is read or contacted: an override names its reason, a reason names its override."""
    reason = " ".join((args.reason or "").split())
    if args.now is not None and not reason:
        raise RefusedError(
            "--now overrides the window guard (break-glass): it needs --reason; nothing was changed",
            "preview a time with `upgrader windows --now T`; to override the guard, say why with "
            "--reason '…' (journaled, audited and notified)",
        )
    if args.reason is not None and args.now is None:
        raise RefusedError(
            "--reason is the reason for a guard override, and nothing is overridden",
            "drop --reason: without --now the window guard decides at the real time",
        )


def bypass(
    args: argparse.Namespace,
    spec: Playbook,
    inventory: Inventory,
    datacenters: Iterable[str],
    overrides: Any,
    actor: str,
) -> BreakGlass | None:
    """The break-glass record of a ``--now`` run (None without one): who, why, and what the real time would say."""
    if args.now is None:
        return None
    from upgrader.windows import evaluate

    real = wall_clock()
    verdict = evaluate(spec, inventory, list(datacenters), real, overrides)
    return break_glass(args.reason, real, actor=actor, verdict=verdict, simulated=args.now)


def announce(
    state: Path,
    glass: BreakGlass,
    *,
    command: str,
    component: str,
    version: str,
    run: str | None,
    notify: Callable[..., None],
) -> None:
    """Audit log and notification of a bypass (the run's journal records it with the run)."""
    audit(
        state,
        action="guard-bypassed",
        command=command,
        run=run,
        component=component,
        version=version,
        reason=glass.reason,
        operator=glass.actor,
        guard=glass.to_dict(),
    )
    notify(
        NOTIFY_KIND, component=component, version=version, run=run, operator=glass.actor or "", message=glass.summary()
    )
