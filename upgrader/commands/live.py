"""Shared pieces of the commands that talk to hosts: pool, live facts, output format, confirmation."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Collection
from datetime import datetime
from pathlib import Path

from upgrader.commands import early
from upgrader.commands.inputs import Inputs
from upgrader.commands.specs import install_root
from upgrader.engine import facts as host_facts
from upgrader.engine import open_files
from upgrader.engine.endpoints import endpoints
from upgrader.engine.pool import PARALLEL, Pool
from upgrader.errors import NotConfirmed, UpgraderError
from upgrader.loading import bounded_read
from upgrader.loading.inputs import Loaded
from upgrader.models.facts import Facts
from upgrader.models.inventory import Inventory
from upgrader.models.plan import Limit as PlanLimit
from upgrader.models.plan import Plan
from upgrader.planning.planner import iter_hosts, make_plan, runs_component
from upgrader.transport.base import DEFAULTS, PYTHON, Timeouts


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("connections")
    g.add_argument(
        "--connect-timeout", type=float, default=DEFAULTS.connect, help="seconds for TCP connect and SSH banner"
    )
    g.add_argument("--command-timeout", type=float, default=None, help="cap for one remote command")
    g.add_argument(
        "--parallel",
        type=parallel,
        default=PARALLEL,
        metavar="N",
        help=f"hosts worked on at once (default {PARALLEL}); open files still grow with the hosts "
        "contacted, one connection each (see upgrader/engine/open_files.py)",
    )
    g.add_argument("--python", default=PYTHON, help="python3 on the hosts (runs the upgrader agent)")


def parallel(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"--parallel must be at least 1, not {value}")
    return value


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=["auto", "plain", "json", "rich"],
        default="auto",
        help="live progress: rich table on a terminal, plain lines otherwise, or JSON lines",
    )
    parser.add_argument(
        "--metrics-dir",
        type=Path,
        default=os.environ.get("UPGRADER_METRICS_DIR"),
        help="write upgrader.prom for node_exporter's textfile collector at the end of the run",
    )


def export_metrics(args: argparse.Namespace) -> None:
    """Best effort: monitoring must never change a run's outcome."""
    if not getattr(args, "metrics_dir", None):
        return
    from upgrader.reporting import write_metrics

    try:  # loading/output.py's policy: the directory is never created; a run only warns
        write_metrics(args.state_dir, Path(args.metrics_dir))
    except (OSError, UpgraderError) as exc:
        print(f"warning: cannot write metrics to {args.metrics_dir}: {exc}", file=sys.stderr)


def artifacts_dir(args: argparse.Namespace) -> Path:
    return Path(args.artifacts or os.environ.get("UPGRADER_ARTIFACTS") or "build/artifacts")


def pool_for(inventory: Loaded[Inventory], args: argparse.Namespace) -> Pool:
    timeouts = Timeouts.for_options(args.connect_timeout, args.command_timeout)
    reach = endpoints(inventory.model, inventory.path)
    open_files.for_endpoints(reach.values(), args.parallel)  # raise RLIMIT_NOFILE or refuse before any connection
    pool = Pool(reach, timeouts=timeouts, parallel=args.parallel)
    early.adopt(pool, getattr(args, "early", None), inventory.sha256)  # what cli.main's early start began
    early.remember(args.state_dir, inventory.sha256, inventory.model, reach)
    return pool


def live_facts(inputs: Inputs, pool: Pool, python: str, hosts: Collection[str] | None = None) -> Facts:
    """Facts of the hosts that run the playbook's component (only those of ``hosts``, a --limit, if given)."""
    spec, inv = inputs.playbook.model, inputs.inventory.model
    names = (
        None
        if hosts is None
        else [n for _, n, h in iter_hosts(inv) if n in hosts and runs_component(inv, h, spec.component)]
    )
    facts, _ = host_facts.gather(pool, inv, spec, hosts=names, python=python)
    reachable = [h for h, f in facts.hosts.items() if f.reachable]
    beside = Path(inputs.playbook.path).parent  # the required components' playbooks stand next to this one
    for other in sorted(spec.requires):
        root = install_root(other, beside)
        facts = host_facts.merge(facts, host_facts.installed(pool, reachable, other, root, python))
    return facts


def plan_for(inputs: Inputs, facts: Facts, limit: PlanLimit | None = None) -> Plan:
    return make_plan(
        inputs.playbook.model,
        inputs.inventory.model,
        facts,
        playbook_ref=inputs.playbook_ref(),
        inventory_ref=inputs.inventory_ref(),
        limit=limit,
        controller_files=inputs.controller_files(),
    )


def confirm(question: str, assume_yes: bool) -> None:
    if assume_yes:
        return
    if not sys.stdin.isatty():
        raise NotConfirmed("not confirmed: no terminal to ask on", "pass --yes for non-interactive runs")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise NotConfirmed("not confirmed; nothing was changed")


def aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset, e.g. 2026-11-28T02:00:00-05:00")
    if not bounded_read.reasonable_year(value.year):  # window arithmetic near year 9999 overflows
        years = bounded_read.YEARS
        raise argparse.ArgumentTypeError(f"{text!r} is outside the years {years[0]}-{years[1]}")
    return value
