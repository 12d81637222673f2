"""`upgrader windows -i INVENTORY [PLAYBOOK]`: what blocks a run now, and the next allowed windows."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Collection
from pathlib import Path
from zoneinfo import ZoneInfo

from upgrader.commands import targeting
from upgrader.commands.inputs import load_inputs
from upgrader.errors import ExitCode, InputError, RefusedError, UpgraderError
from upgrader.loading import bounded_read
from upgrader.loading.inputs import load_inventory
from upgrader.models.inventory import Inventory
from upgrader.models.playbook import Playbook, Windows
from upgrader.windows import Verdict, evaluate_windows, load_overrides, market_problems
from upgrader.windows.verdict import show

HELP = "show what blocks a run now (markets, maintenance windows, freezes) and the next allowed windows"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "playbook",
        nargs="?",
        type=Path,
        metavar="PLAYBOOK",
        help="its windows: section applies (default: markets of the inventory only)",
    )
    parser.add_argument("-i", "--inventory", type=Path, required=True)
    parser.add_argument("--overrides", type=Path, help="operator override file (extra closures and freeze days)")
    targeting.add_argument(parser)  # the datacenters of the hosts it selects (default: those running the component)
    targeting.add_deprecated(parser, "--datacenter", "dc:")  # the old spelling, hidden: it warns
    parser.add_argument("--now", type=parse_now, help="evaluate at this ISO 8601 time with an offset (default: now)")
    parser.add_argument("--days", type=_days, default=14, help="how far ahead to search for allowed windows (1-366)")
    parser.add_argument("--format", choices=["text", "json"], default="text")


def _days(text: str) -> int:
    """A search horizon a calendar can answer (past year 9999 dates overflow; a year is plenty)."""
    if not text.isdigit() or not 1 <= int(text) <= 366:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days from 1 to 366")
    return int(text)


def parse_now(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time, e.g. 2026-11-24T11:00-05:00") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset — add one, e.g. {text}-05:00 or {text}Z")
    if not bounded_read.reasonable_year(value.year):
        raise argparse.ArgumentTypeError(
            f"{text!r} is outside the years {bounded_read.YEARS[0]}-{bounded_read.YEARS[1]}"
        )
    return value


def run(args: argparse.Namespace) -> int:
    windows, inventory, dcs = _inputs(args)
    overrides = load_overrides(args.overrides).model if args.overrides else None
    now = args.now or dt.datetime.now(dt.UTC)
    if args.days < 1:
        raise UpgraderError("--days must be at least 1")
    verdict = evaluate_windows(windows, inventory, dcs, now, overrides, horizon=dt.timedelta(days=args.days))
    if args.format == "json":
        print(json.dumps(verdict.to_dict(), indent=2, sort_keys=True))
    elif sys.stdout.isatty():
        _rich(verdict)
    else:
        print(plain(verdict))
    return int(ExitCode.OK) if verdict.allowed else int(ExitCode.REFUSED)


def _inputs(args: argparse.Namespace) -> tuple[Windows, Inventory, list[str]]:
    playbook: Playbook | None = None
    if args.playbook:
        inputs = load_inputs(args.playbook, args.inventory)
        inv, playbook = inputs.inventory, inputs.playbook.model
        problems = market_problems(playbook.windows, inputs.playbook, inv)
    else:
        inv = load_inventory(args.inventory)
        problems = market_problems(Windows(), None, inv)
    if problems:
        raise InputError(problems)
    selection = targeting.select(args, inv)
    dcs = involved_datacenters(inv.model, playbook, selection.hosts if selection else None)
    if not dcs:
        raise RefusedError(
            f"no host selected by --limit {','.join(args.limit)} runs {playbook.component if playbook else 'anything'}",
            "widen the --limit",
        )
    return (playbook.windows if playbook else Windows()), inv.model, dcs


def involved_datacenters(
    inventory: Inventory, playbook: Playbook | None, selected: Collection[str] | None = None
) -> list[str]:
    """Datacenters with a (``selected``) host whose roles run the playbook's component (any role, without one)."""
    if playbook is None and selected is None:
        return list(inventory.datacenters)
    roles = {r for r, comps in inventory.roles.items() if playbook is None or playbook.component in comps}
    return [
        name
        for name, dc in inventory.datacenters.items()
        if any(
            (playbook is None or roles.intersection(h.roles)) and (selected is None or n in selected)
            for n, h in dc.hosts.items()
        )
    ]


def plain(verdict: Verdict) -> str:
    lines = [verdict.text(), "", f"markets: {', '.join(verdict.markets) or 'none'}", "allowed windows:"]
    lines += [f"  {verdict.describe(w)}" for w in verdict.windows] or ["  none within the horizon"]
    return "\n".join(lines)


def _rich(verdict: Verdict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    state = "[green]allowed[/green]" if verdict.allowed else "[red]blocked[/red]"
    console.print(
        f"{state} at {show(verdict.now, verdict.zone)} — markets: {', '.join(verdict.markets) or 'none'}",
        highlight=False,
    )
    if verdict.blockers:
        table = Table("kind", "what", "until (local)", "until (UTC)", title="blocking now")
        for b in verdict.blockers:
            table.add_row(
                b.kind,
                b.what,
                f"{b.until.astimezone(ZoneInfo(b.zone)):%a %Y-%m-%d %H:%M} {b.zone}",
                f"{b.until:%Y-%m-%d %H:%M}",
            )
        console.print(table)
    elif verdict.closes_at:
        console.print(f"this window closes: {show(verdict.closes_at, verdict.zone)}", highlight=False)
    table = Table("from", "to", "length", title=f"allowed windows ({verdict.zone})")
    for w in verdict.windows:
        end = show(w.end, verdict.zone) if w.end else "beyond the horizon"
        table.add_row(show(w.start, verdict.zone), end, _length(w.start, w.end))
    console.print(table)


def _length(start: dt.datetime, end: dt.datetime | None) -> str:
    if end is None:
        return ""
    minutes = int((end - start).total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"
