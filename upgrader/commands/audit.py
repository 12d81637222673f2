"""`upgrader audit -i INVENTORY [PLAYBOOK...]`: does every host's service report the version it should?

Exit 0 only when every host agrees; 1 names each outlier (skewed, stale process, not reporting,
unreachable, no expectation).  Meant for a timer before each market open (examples/systemd/).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from upgrader.commands import live, targeting
from upgrader.commands.specs import find_playbook
from upgrader.commands.tables import print_table
from upgrader.engine import facts as host_facts
from upgrader.engine import programs
from upgrader.engine.notifier import notifier
from upgrader.errors import ExitCode, RefusedError
from upgrader.loading import output
from upgrader.loading.inputs import Loaded, load_inventory, load_playbook
from upgrader.models.inventory import Inventory
from upgrader.models.playbook import Playbook
from upgrader.planning.planner import iter_hosts, runs_component
from upgrader.reporting.consistency import Expected, HostAudit, expected_from_hosts, expected_from_runs, judge

HELP = "fleet consistency: each host's running version (as its service reports it) against the expected one"

EPILOG = """\
The expected version is the playbook's when PLAYBOOKs are given, else the release each host itself
records as the last it verified (after an install or a rollback, by any controller); for a host with
no such record, what the newest successful run in this state directory left there. A component with
neither is skipped with a warning; a host with neither is an outlier. Nothing audited at all exits 1.

example:
  upgrader audit -i inventories/prod-na.yml                        # against the journal
  upgrader audit -i inventories/prod-na.yml playbooks/ordergw-5.2.0.yml --metrics-dir /var/lib/node_exporter

exit codes: 0 every host agrees; 1 some host is an outlier (each is named), nothing was audited, or bad
input; 2 usage
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "playbooks",
        nargs="*",
        type=Path,
        metavar="PLAYBOOK",
        help="the releases the fleet should run (default: what the last successful runs left)",
    )
    parser.add_argument("-i", "--inventory", type=Path, required=True, help="the inventory whose hosts to audit")
    parser.add_argument(
        "--playbook-dir",
        type=Path,
        default=Path("playbooks"),
        help="where to find each component's service and version check when no PLAYBOOK is given",
    )
    parser.add_argument("--format", choices=["table", "json"], default="table")
    parser.add_argument(
        "--metrics-dir",
        "--metrics",
        dest="metrics_dir",
        type=Path,
        default=None,
        help="write upgrader_audit.prom (version skew) for node_exporter's textfile collector",
    )
    targeting.add_argument(parser)
    live.add_connection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    output.check_dir(args.metrics_dir, "--metrics-dir")  # never created; refused before any host is asked
    inventory = load_inventory(args.inventory)
    inv = inventory.model
    selection = targeting.select(args, inventory)  # before any playbook is read or host asked
    specs = _specs(args, {c for comps in inv.roles.values() for c in comps})
    records = None
    dcs = {name: dc for dc, name, _ in iter_hosts(inv)}
    rows: list[HostAudit] = []
    pool = live.pool_for(inventory, args)
    try:
        for component, (spec, pinned) in sorted(specs.items()):
            hosts = [
                n
                for _, n, h in iter_hosts(inv)
                if runs_component(inv, h, component) and (selection is None or n in selection.hosts)
            ]
            if not hosts:
                continue
            _, raw = host_facts.gather(pool, inv, spec.model, hosts=hosts, python=args.python)
            if pinned is not None:
                expected = dict.fromkeys(hosts, pinned)
            else:
                if records is None:
                    from upgrader.reporting.parse import load_runs

                    records = load_runs(args.state_dir)
                # What each host verified, as it records it, first: another controller's rollback or a halted
                # run is in the host's record; this controller's journals only fill in hosts without one.
                expected = {**expected_from_runs(records, component), **expected_from_hosts(raw)}
                if not expected:  # never upgraded by upgrader here: nothing says what it should run
                    print(
                        f"warning: {component} not audited: no host records a verified release and no "
                        f"successful run in {args.state_dir}; name its playbook to audit it",
                        file=sys.stderr,
                    )
                    continue
            has_check = programs.version_check(spec.model) is not None
            rows += [judge(component, h, dcs[h], expected.get(h), raw[h], has_check) for h in hosts]
    finally:
        pool.close()
    if not rows:  # nothing checked is not success: "0 of 0 host(s) agree" with exit 0 would say all is well
        raise RefusedError(
            "nothing was audited: no selected host runs a component with a playbook to audit "
            "against (see the warnings above, if any)",
            "name the playbooks of what the hosts run, or a --limit that selects hosts running them",
        )
    _print(rows, args.format)
    if args.metrics_dir:
        from upgrader.reporting.skew import write_audit_metrics

        write_audit_metrics(rows, args.metrics_dir, time.time())  # RefusedError if it cannot (loading/output.py)
    _notify(inventory.model, rows)
    return int(ExitCode.OK if all(r.ok for r in rows) else ExitCode.REFUSED)


def _specs(args: argparse.Namespace, components: set[str]) -> dict[str, tuple[Loaded[Playbook], Expected | None]]:
    """Per component: the playbook describing its service, and the pinned expectation if one was named."""
    if args.playbooks:
        out: dict[str, tuple[Loaded[Playbook], Expected | None]] = {}
        for path in args.playbooks:
            pb = load_playbook(path)
            if pb.model.component in out:
                raise RefusedError(
                    f"{path}: a second playbook for {pb.model.component}", "name one release per component"
                )
            out[pb.model.component] = (pb, Expected(pb.model.version, f"playbook {path}"))
        return out
    found: dict[str, tuple[Loaded[Playbook], Expected | None]] = {}
    for component in sorted(components):
        try:
            found[component] = (find_playbook(component, args.playbook_dir), None)
        except RefusedError as exc:
            print(f"warning: {component} not audited: {exc}", file=sys.stderr)
    if not found:
        raise RefusedError(
            f"no playbook in {args.playbook_dir} describes any component of the inventory",
            "name the playbooks to audit against, or pass --playbook-dir",
        )
    return found


def _print(rows: list[HostAudit], fmt: str) -> None:
    if fmt == "json":
        json.dump([r.to_dict() for r in rows], sys.stdout, indent=2, sort_keys=True)
        print()
        return
    header = ("component", "host", "dc", "expected", "reported", "verdict", "detail")
    cells = [
        (
            r.component,
            r.host,
            r.datacenter,
            r.expected.version if r.expected else "-",
            r.reported or "-",
            str(r.verdict),
            r.detail,
        )
        for r in rows
    ]
    print_table("upgrader audit", header, cells, [not r.ok for r in rows])
    bad = [r for r in rows if not r.ok]
    print(
        f"\n{len(rows) - len(bad)} of {len(rows)} host(s) agree"
        + (f"; outliers: {', '.join(f'{r.host} ({r.component}: {r.verdict})' for r in bad)}" if bad else "")
    )


def _notify(inventory: Inventory, rows: list[HostAudit]) -> None:
    with notifier(inventory, lambda: datetime.now(UTC)) as notify:
        for component in sorted({r.component for r in rows if not r.ok}):
            bad = [r for r in rows if r.component == component and not r.ok]
            expected = next((r.expected.version for r in bad if r.expected), "?")
            notify(
                "audit-skew",
                component=component,
                version=expected,
                message=f"{len(bad)} host(s) off the expected version: "
                + ", ".join(f"{r.host} {r.verdict}" for r in bad),
                outliers=len(bad),
            )
