"""What `promote` and `abort` share: find the run, check it can still take a decision, record it."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from upgrader.commands import durable
from upgrader.engine import gates
from upgrader.engine.journal import Journal, audit, operator
from upgrader.engine.vocabulary import Event
from upgrader.errors import RefusedError


def add_arguments(parser: argparse.ArgumentParser, epilog: str, *, reason_required: bool) -> None:
    parser.epilog = epilog
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("run_id", metavar="RUN", help="the run's id (`upgrader runs`)")
    parser.add_argument("--reason", required=reason_required, default="",
                        help="why (journaled and audited)" + ("" if reason_required else "; optional"))


def waiting_gate(entries: list[dict[str, Any]]) -> str | None:
    """The gate the run waits at now: its last gate-wait with no gate-end after it."""
    open_gate = None
    for entry in entries:
        if entry.get("event") == Event.GATE_WAIT:
            open_gate = entry.get("gate")
        elif entry.get("event") == Event.GATE_END and entry.get("gate") == open_gate:
            open_gate = None
    return open_gate if isinstance(open_gate, str) else None


def run(args: argparse.Namespace, kind: gates.DecisionKind) -> int:
    journal = Journal.open(args.state_dir, args.run_id)
    entries = journal.entries()
    if any(e.get("event") == Event.RUN_END for e in entries):
        raise RefusedError(f"run {args.run_id} has already finished; nothing to {kind}",
                           f"see it with `upgrader show {args.run_id}`")
    reason = args.reason.strip()
    gate = None
    if kind is gates.DecisionKind.PROMOTE:
        gate = args.gate or waiting_gate(entries)
        if gate is None:
            raise RefusedError(f"run {args.run_id} is not waiting at a gate",
                               "promote when `upgrader show` says it waits, or name the gate with --gate")
    who = operator()
    durable_run = durable.run_record(args, args.run_id)
    if durable_run is not None:  # a Temporal run: the decision is a signal to its workflow
        decision = gates.Decision(kind, gate if kind is gates.DecisionKind.PROMOTE else None, who, reason,
                                  datetime.now(UTC).isoformat(timespec="milliseconds"))
        durable.signal(durable_run, decision.to_dict())
    else:
        decision = gates.request(journal.directory, kind, gate=gate, operator=who, reason=reason)
    audit(args.state_dir, action=str(kind), run=args.run_id, gate=gate, operator=who, reason=reason)
    print(f"{kind} recorded for run {args.run_id}" + (f" at gate {gate}" if gate else "") +
          f" by {who} at {decision.at}")
    return 0
