"""`upgrader show RUN`: one run's journal, readable (or raw JSON lines)."""

from __future__ import annotations

import argparse
import json

from upgrader.journal import Journal
from upgrader.vocabulary import Event

HELP = "print one run's journal"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN")
    parser.add_argument("--format", choices=["text", "json"], default="text")


def describe(e: dict) -> str:  # type: ignore[type-arg]
    ev = e["event"]
    host = f"{e['host']}: " if e.get("host") else ""
    if ev == Event.RUN_START:
        return (
            f"{e.get('kind')} {e.get('component')} {e.get('version') or e.get('to') or ''} by {e.get('operator')}"
            + (f" — reason: {e['reason']}" if e.get("reason") else "")
            + f" plan {e.get('plan_hash', '-')}"
        )
    if ev in (Event.HOST_END, Event.ROLLBACK_END, Event.BAKE_END):
        ok = "ok" if e.get("ok") else "FAILED"
        bad = next((o for o in e.get("ops", []) if not o.get("ok")), None)
        why = f" — {bad.get('op')}: {bad.get('error')}" if bad else (f" — {e['error']}" if e.get("error") else "")
        secs = sum(o.get("seconds", 0) for o in e.get("ops", []))
        return f"{host}{ev} {ok} ({secs:.2f}s on host){why}"
    if ev == Event.GATE_END:
        d = e.get("decision") or {}
        by = f" by {d.get('operator')}" + (f" — {d['reason']}" if d.get("reason") else "") if d else ""
        ahead = f" (approved ahead, at {d.get('at')}, before the run reached it)" if d.get("ahead") else ""
        return f"gate {e.get('gate')} {e.get('outcome')}{by}{ahead} after {e.get('waited')}s" + (
            f" — {e['detail']}" if e.get("detail") else ""
        )
    if ev == Event.RUN_END:
        return f"{e.get('status')} (exit {e.get('exit_code')}): {e.get('message')}"
    keys = {k: v for k, v in e.items() if k not in ("seq", "at", "event", "host")}
    return f"{host}{ev} {json.dumps(keys, sort_keys=True, default=str)[:200]}"


def run(args: argparse.Namespace) -> int:
    journal = Journal.open(args.state_dir, args.run_id)
    entries = journal.entries()
    for entry in entries:
        if args.format == "json":
            print(json.dumps(entry, sort_keys=True))
        else:
            print(f"{entry['at']}  {describe(entry)}")
    if args.format == "text":
        _ahead(journal, entries)
    if args.format == "text" and not any(e["event"] == Event.RUN_END for e in entries):
        _live(args)
    return 0


def _ahead(journal: Journal, entries: list[dict]) -> None:  # type: ignore[type-arg]
    """Gates approved in advance (`promote --ahead`) that the run has not reached yet."""
    from upgrader.engine import gates

    passed = {e.get("gate") for e in entries if e["event"] == Event.GATE_END}
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
