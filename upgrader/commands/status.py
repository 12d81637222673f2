"""`upgrader status -i INVENTORY [COMPONENT...]`: what runs where, gathered in parallel."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from upgrader.commands import components as component_names
from upgrader.commands import durable, live, targeting
from upgrader.commands.specs import find_playbook
from upgrader.commands.tables import print_table
from upgrader.engine import facts as host_facts
from upgrader.errors import RefusedError
from upgrader.journal import list_runs, read_run
from upgrader.loading.inputs import load_inventory
from upgrader.planning.planner import iter_hosts, runs_component
from upgrader.vocabulary import Event, HostState

HELP = "installed and previous versions, service health and locks of every host"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("components", nargs="*", metavar="COMPONENT", help="default: every component in the inventory")
    parser.add_argument(
        "-i", "--inventory", type=Path, help="the inventory (required, except for `status RUN` of a Temporal run)"
    )
    parser.add_argument("--playbooks", type=Path, default=Path("playbooks"))
    parser.add_argument("--format", choices=["table", "json"], default="table")
    targeting.add_argument(parser)
    live.add_connection_arguments(parser)


def last_run_versions(state: Path, component: str) -> dict[str, str]:
    """Each host's version at the end of the newest finished run of ``component``."""
    for summary in reversed(list_runs(state)):
        if summary.component != component or summary.exit_code is None:
            continue
        entries = list(read_run(state, summary.run_id))
        end = [e for e in entries if e["event"] == Event.RUN_END]
        start = entries[0]
        out = {}
        for host, info in (end[-1].get("hosts") or {}).items():
            if info.get("version"):
                out[host] = info["version"]
            elif info.get("state") == HostState.DONE:
                out[host] = start.get("version")
        return {h: v for h, v in out.items() if v}
    return {}


def run(args: argparse.Namespace) -> int:
    if len(args.components) == 1 and durable.is_run(args, args.components[0]):
        return durable.status(args, args.components[0])  # `status RUN`: what the run's workflow says now
    if args.inventory is None:
        raise RefusedError(
            "status needs -i INVENTORY",
            "e.g. upgrader status -i inventories/prod-na.yml ordergw; or `upgrader status RUN` for a Temporal run",
        )
    inventory = load_inventory(args.inventory)
    inv = inventory.model
    for name in args.components:  # a misspelt component: one line with a did-you-mean, nobody contacted
        component_names.check(name, inv, inventory.path)
    selection = targeting.select(args, inventory)
    components = args.components or sorted({c for comps in inv.roles.values() for c in comps})
    rows: list[dict[str, Any]] = []
    for component in components:
        try:
            playbook = find_playbook(component, args.playbooks)
        except RefusedError:
            if args.components:
                raise
            continue
        hosts = [
            n
            for _, n, h in iter_hosts(inv)
            if runs_component(inv, h, component) and (selection is None or n in selection.hosts)
        ]
        if not hosts:
            continue
        pool = live.pool_for(inventory, args)
        try:
            _, raw = host_facts.gather(pool, inv, playbook.model, hosts=hosts, python=args.python)
        finally:
            pool.close()
        rows += _rows(
            component, hosts, raw, {n: dc for dc, n, _ in iter_hosts(inv)}, last_run_versions(args.state_dir, component)
        )
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2, sort_keys=True)
        print()
    else:
        _table(rows)
    return 1 if any(r["attention"] for r in rows) else 0


def _rows(
    component: str, hosts: list[str], raw: dict[str, dict[str, Any]], dcs: dict[str, str], last: dict[str, str]
) -> list[dict[str, Any]]:
    majority = Counter(r.get("installed") for r in raw.values() if "error" not in r).most_common(1)
    common = majority[0][0] if majority else None
    rows = []
    for host in hosts:
        r = raw[host]
        notes = []
        if "error" in r:
            notes.append(f"unreachable: {r['error']}")
        else:
            if r.get("installed") != common:
                notes.append(f"differs from majority ({common})")
            # The host's own record of what it verified decides; a controller's journal only adds history
            # (another desk's rollback, or a run halted elsewhere, is in the host's record, not in ours).
            verified = r.get("verified") if isinstance(r.get("verified"), dict) else None
            if r.get("installed") and r.get("installed_by") and (verified or {}).get("version") != r.get("installed"):
                notes.append(
                    f"{r.get('installed')} not verified since run {r['installed_by'].get('run')} switched to it"
                )
            elif verified is None and host in last and last[host] != r.get("installed"):
                notes.append(f"last run left {last[host]}")  # no host record: the journal is all there is
            if r.get("service") != "active":
                notes.append(f"service {r.get('service')}")
            elif r.get("reported_version") not in (None, r.get("installed")):
                notes.append(f"reports {r.get('reported_version')}")
            if r.get("lock"):
                lk = r["lock"]
                notes.append(f"locked by {lk.get('kind')} {lk.get('run')} ({lk.get('operator')})")
        rows.append(
            {
                "component": component,
                "host": host,
                "datacenter": dcs[host],
                "installed": r.get("installed"),
                "previous": r.get("previous"),
                "service": r.get("service"),
                "reported_version": r.get("reported_version"),
                "lock": r.get("lock"),
                "staged": r.get("staged", []),
                "attention": notes,
                "verified": r.get("verified"),
                "installed_by": r.get("installed_by"),
            }
        )
    return rows


def _table(rows: list[dict[str, Any]]) -> None:
    header = ("component", "host", "dc", "installed", "previous", "service", "staged", "attention")
    cells = [
        (
            r["component"],
            r["host"],
            r["datacenter"],
            r["installed"] or "-",
            r["previous"] or "-",
            r["service"] or "-",
            ",".join(r["staged"]) or "-",
            "; ".join(r["attention"]) or "-",
        )
        for r in rows
    ]
    print_table("upgrader status", header, cells, [bool(r["attention"]) for r in rows])
