"""`upgrader show RUN`: one run's journal, readable (or raw JSON lines)."""

from __future__ import annotations

import argparse
import json

from upgrader import records
from upgrader.journal import Journal
from upgrader.records import BakeEnd, GateEnd, HostEnd, Record, RollbackEnd, RunEnd, RunStart

HELP = "print one run's journal"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN")
    parser.add_argument("--format", choices=["text", "json"], default="text")


def describe(e: Record) -> str:
    host = f"{h}: " if (h := records.host_of(e)) else ""
    match e:
        case RunStart():
            return (
                f"{e.kind} {e.component} {e.version or e.to or ''} by {e.operator}"
                + (f" — reason: {e.reason}" if e.reason else "")
                + f" plan {e.plan_hash or '-'}"
            )
        case HostEnd() | RollbackEnd() | BakeEnd():
            ok = "ok" if e.ok else "FAILED"
            bad = next((o for o in e.ops if not o.ok), None)
            why = f" — {bad.op}: {bad.error}" if bad else (f" — {e.error}" if e.error else "")
            return f"{host}{e.event} {ok} ({e.host_seconds:.2f}s on host){why}"
        case GateEnd():
            d = e.decision or {}
            by = f" by {d.get('operator')}" + (f" — {d['reason']}" if d.get("reason") else "") if d else ""
            ahead = f" (approved ahead, at {d.get('at')}, before the run reached it)" if d.get("ahead") else ""
            return f"gate {e.gate} {e.outcome}{by}{ahead} after {e.waited}s" + (f" — {e.detail}" if e.detail else "")
        case RunEnd():
            return f"{e.status} (exit {e.exit_code}): {e.message}"
    keys = {k: v for k, v in e.fields.items() if k not in ("seq", "at", "event", "host")}
    return f"{host}{e.event} {json.dumps(keys, sort_keys=True, default=str)[:200]}"


def run(args: argparse.Namespace) -> int:
    journal = Journal.open(args.state_dir, args.run_id)
    entries = journal.entries()
    for entry in entries:
        if args.format == "json":
            print(json.dumps(entry.fields, sort_keys=True))
        else:
            print(f"{entry.fields['at']}  {describe(entry)}")
    if args.format == "text":
        _ahead(journal, entries)
    if args.format == "text" and not records.of_kind(entries, RunEnd):
        _live(args)
    return 0


def _ahead(journal: Journal, entries: list[Record]) -> None:
    """Gates approved in advance (`promote --ahead`) that the run has not reached yet."""
    from upgrader.engine import gates

    passed = {e.gate for e in records.of_kind(entries, GateEnd)}
    for d in gates.decisions(journal.directory):
        if d.ahead and d.gate not in passed:
            print(
                f"pre-approved  gate {d.gate} approved ahead by {d.operator} at {d.at}"
                + (f" — {d.reason}" if d.reason else "")
                + " (not reached yet)"
            )


def _live(args: argparse.Namespace) -> None:
    """A Temporal run still going: what its workflow says now, after what the journal holds so far."""
    from upgrader.commands import durable

    record = durable.run_record(args, args.run_id)
    state = durable.query(record) if record is not None else None
    if state is None or record is None:
        return
    waiting = state.get("waiting")
    print(f"live (workflow {record['workflow_id']})" + (f": waiting at gate {waiting}" if waiting else ":"))
    for host, dc, st, detail in durable.live_rows(state):
        print(f"  {host:<20} {dc:<8} {st:<14} {detail}")
