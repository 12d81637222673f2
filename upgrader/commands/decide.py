"""What `promote` and `abort` share: find the run, check it can still take a decision, record it, and
wait (briefly) for the run to act on it, so the exit code says what happened.

Two operators at once (a promote and an abort in the same second) each write their own decision file;
the run takes them in one order — an abort wins over a promote it sees at the same look — and each
command reports from the run's journal what became of its own decision.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import Any

from upgrader.commands import durable
from upgrader.engine import gates
from upgrader.engine.resume import ended, halted
from upgrader.errors import RefusedError
from upgrader.journal import Journal, audit, operator
from upgrader.vocabulary import Event

WAIT = 10.0  # seconds a decision waits for the run to act on it (a waiting gate looks every 0.5 s)


def add_arguments(parser: argparse.ArgumentParser, epilog: str, *, reason_required: bool) -> None:
    parser.epilog = epilog
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("run_id", metavar="RUN", help="the run's id (`upgrader runs`)")
    parser.add_argument(
        "--reason",
        required=reason_required,
        default="",
        help="why (journaled and audited)" + ("" if reason_required else "; optional"),
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=WAIT,
        metavar="SECONDS",
        help=f"how long to wait for the run to act on it (default {WAIT:g}; 0: do not wait)",
    )


def waiting_gate(entries: list[dict[str, Any]]) -> str | None:
    """The gate the run waits at now: its last gate-wait with no gate-end after it."""
    open_gate = None
    for entry in entries:
        if entry.get("event") == Event.GATE_WAIT:
            open_gate = entry.get("gate")
        elif entry.get("event") == Event.GATE_END and entry.get("gate") == open_gate:
            open_gate = None
    return open_gate if isinstance(open_gate, str) else None


def plan_gates(journal: Journal) -> list[str]:
    """The run's gates in plan order (from its saved plan.json)."""
    try:
        plan = json.loads((journal.directory / "plan.json").read_text(encoding="utf-8"))
        return [p["gate"]["id"] for p in plan.get("phases", []) if isinstance(p.get("gate"), dict)]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def promote_gate(args: argparse.Namespace, journal: Journal, entries: list[dict[str, Any]]) -> str:
    """The gate this promote is for: the one the run waits at, or (with --ahead) a later one of its plan."""
    waiting = waiting_gate(entries)
    gate = args.gate or waiting
    ahead = getattr(args, "ahead", False)
    if ahead and not args.gate:
        raise RefusedError(
            "--ahead needs --gate GATE: name the gate you approve in advance",
            f"the run's gates: {', '.join(plan_gates(journal)) or 'none'}",
        )
    if ahead and gate != waiting:
        passed = {e.get("gate") for e in entries if e.get("event") == Event.GATE_END}
        if gate not in plan_gates(journal) or gate in passed:
            raise RefusedError(
                f"run {args.run_id} has no gate {gate} still ahead of it",
                f"its gates: {', '.join(plan_gates(journal)) or 'none'}; passed: "
                f"{', '.join(sorted(str(g) for g in passed)) or 'none'}",
            )
        return str(gate)
    if waiting is None:
        raise RefusedError(
            f"run {args.run_id} is not waiting at a gate",
            "promote when `upgrader show` says it waits; to approve a later gate in advance, "
            "`promote RUN --gate GATE --ahead --reason …` (audited)",
        )
    if gate != waiting:
        raise RefusedError(
            f"run {args.run_id} waits at gate {waiting}, not {gate}; nothing was recorded",
            f"promote {waiting} (`upgrader promote {args.run_id}`), or approve {gate} in advance "
            "with --ahead --reason … (audited)",
        )
    return waiting


def run(args: argparse.Namespace, kind: gates.DecisionKind) -> int:
    journal = Journal.open(args.state_dir, args.run_id)
    entries = journal.entries()
    end = ended(entries)
    if end is not None:
        raise RefusedError(
            f"run {args.run_id} has already finished ({end.get('status')}); nothing to {kind}",
            f"see it with `upgrader show {args.run_id}`",
        )
    if halted(entries) is not None:
        raise RefusedError(
            f"run {args.run_id} is halted (not running); nothing to {kind}",
            f"carry it on with `upgrader resume {args.run_id}`, or put hosts back with `upgrader rollback`",
        )
    reason = args.reason.strip()
    promote = kind is gates.DecisionKind.PROMOTE
    gate = promote_gate(args, journal, entries) if promote else None
    ahead = promote and gate != waiting_gate(entries)
    keep = not promote and bool(getattr(args, "keep", False))
    who = operator()
    durable_run = durable.run_record(args, args.run_id)
    if durable_run is not None:  # a Temporal run: the decision is a signal to its workflow
        decision = gates.Decision(
            kind, gate, who, reason, datetime.now(UTC).isoformat(timespec="milliseconds"), ahead=ahead, keep=keep
        )
        durable.signal(durable_run, decision.to_dict())
    else:
        decision = gates.request(
            journal.directory, kind, gate=gate, operator=who, reason=reason, ahead=ahead, keep=keep
        )
    audit(
        args.state_dir,
        action=str(kind),
        run=args.run_id,
        gate=gate,
        operator=who,
        reason=reason,
        **({"ahead": True} if ahead else {}),
        **({"keep": True} if keep else {}),
    )
    what = (
        f"{kind}" + (" (ahead)" if ahead else "") + (" --keep" if keep else "") + f" recorded for run "
        f"{args.run_id}" + (f" at gate {gate}" if gate else "") + f" by {who} at {decision.at}"
    )
    print(what)
    if durable_run is not None or ahead or args.wait <= 0:
        return 0
    return acknowledged(journal, decision, args.wait)


def acknowledged(journal: Journal, decision: gates.Decision, wait: float) -> int:
    """Wait for the run to act on ``decision``; 0 if it did (or has not yet looked), 1 if it went another way."""
    deadline = time.monotonic() + wait
    while True:
        verdict = _fate(journal.entries(), decision)
        if verdict is not None:
            code, text = verdict
            print(text)
            return code
        if time.monotonic() >= deadline:
            print(
                f"the run has not acted on it within {wait:g}s (a host step in flight ends first); "
                f"follow it with `upgrader show {journal.run_id}`"
            )
            return 0
        time.sleep(0.2)


def _fate(entries: list[dict[str, Any]], decision: gates.Decision) -> tuple[int, str] | None:
    """What the run did with ``decision``, from its journal; None while it has not looked."""
    for e in entries:
        ev = e.get("event")
        if decision.kind is gates.DecisionKind.ABORT and ev == Event.ABORT:
            if e.get("at_decision", e.get("at")) == decision.at or e.get("operator") == decision.operator:
                return 0, "the run took the abort: it starts no new host and puts back what it changed"
            return 0, f"the run was already aborted by {e.get('operator')}: it is putting back what it changed"
        if decision.kind is gates.DecisionKind.PROMOTE and ev == Event.GATE_END and e.get("gate") == decision.gate:
            taken = e.get("decision") or {}
            if e.get("outcome") == gates.GateOutcome.PROMOTED:
                mine = taken.get("at") == decision.at
                return 0, f"gate {decision.gate} passed" + ("" if mine else f" (promoted by {taken.get('operator')})")
            return 1, (
                f"gate {decision.gate} ended {e.get('outcome')}"
                + (f" by {taken.get('operator')}: {taken.get('reason')}" if taken else "")
                + "; your promote did not take effect"
            )
        if ev == Event.RUN_END:
            return 1, f"the run ended ({e.get('status')}) before it acted on your {decision.kind}"
    return None
