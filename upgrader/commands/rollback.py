"""`upgrader rollback COMPONENT -i INVENTORY --reason "..."`: the fastest safe path back."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from upgrader.cli.logs import say
from upgrader.commands import components as component_names
from upgrader.commands import durable, live, targeting
from upgrader.commands.inputs import Inputs
from upgrader.commands.specs import find_playbook
from upgrader.engine import facts as host_facts
from upgrader.engine.journal import Journal, audit, new_run_id, operator
from upgrader.engine.notifier import notifier
from upgrader.engine.progress import Progress
from upgrader.engine.rollback import exit_code, rollback_hosts
from upgrader.engine.vocabulary import Event, HostState, RunStatus
from upgrader.errors import RefusedError
from upgrader.loading import yamlfile
from upgrader.loading.inputs import Loaded, load_inventory, load_playbook
from upgrader.models.inventory import Inventory
from upgrader.models.playbook import Playbook
from upgrader.planning import groups as plan_groups
from upgrader.planning.limit import Selection
from upgrader.planning.planner import iter_hosts, runs_component
from upgrader.windows import break_glass

log = logging.getLogger(__name__)

HELP = "emergency rollback to the previous (or a named) staged release, in parallel, audited"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("component")
    parser.add_argument("-i", "--inventory", type=Path, required=True)
    parser.add_argument("--reason", required=True, help="why (break-glass: journaled and audited)")
    parser.add_argument("--to", metavar="VERSION", help="a specific staged version (default: the previous one)")
    targeting.add_argument(parser)
    # Old spellings, hidden: a runbook written before --limit must still work in an incident (it warns).
    targeting.add_deprecated(parser, "--dc", "dc:")
    targeting.add_deprecated(parser, "--hosts", "")
    parser.add_argument("--playbook", type=Path,
                        help="playbook for the component's layout, and the service and checks for a release "
                        "the hosts hold no record of (default: the plan of the newest run of COMPONENT)")
    parser.add_argument("--playbooks", type=Path, metavar="DIR",
                        help="if no run of COMPONENT is journaled and no --playbook is given: the newest "
                        "playbook for it in DIR (reads every playbook there)")
    parser.add_argument("--yes", action="store_true", help="do not show the plan and ask")
    live.add_connection_arguments(parser)
    live.add_output_arguments(parser)


def select_hosts(inventory: Loaded[Inventory], component: str, selection: Selection | None) -> list[str]:
    """The hosts that run ``component``, within the --limit selection if there is one."""
    inv = inventory.model
    chosen = [name for _, name, host in iter_hosts(inv)
              if runs_component(inv, host, component) and (selection is None or name in selection.hosts)]
    if not chosen:
        component_names.check(component, inv, inventory.path)  # a misspelt name: did you mean …?
        where = f" among the hosts --limit {','.join(selection.patterns)} selects" if selection else ""
        raise RefusedError(f"no host runs {component}{where} in {inventory.path}",
                           "check the component and the limit with `upgrader status --limit …`")
    return chosen


def layout_source(args: argparse.Namespace) -> Loaded[Playbook]:
    """Where the component lives and how to check a release the hosts hold no record of; one file read.

    The hosts' own records (what each release was installed and verified with, kept by the agent)
    come first on every host; this is the fallback, and the install root to reach the agent.
    """
    if args.playbook:
        return load_playbook(args.playbook)
    journaled = last_run_plan(args.state_dir, args.component)
    if journaled is not None:
        return journaled
    if args.playbooks:
        return find_playbook(args.component, args.playbooks)
    raise RefusedError(f"no run of {args.component} in {args.state_dir} and no --playbook: nothing says "
                       f"where {args.component} is installed",
                       f"name its playbook: --playbook playbooks/{args.component}-….yml")


def last_run_plan(state: Path, component: str) -> Loaded[Playbook] | None:
    """The playbook of the newest journaled run of ``component`` (its plan.json), read and validated alone."""
    from upgrader.engine.journal import runs_dir
    from upgrader.loading.inputs import read_plan_file

    named = re.compile(rf"\d{{8}}T\d{{6}}Z-{re.escape(component)}-[0-9a-f]{{4}}")
    base = runs_dir(state)
    names = sorted((p.name for p in base.iterdir() if named.fullmatch(p.name)), reverse=True) if base.is_dir() else []
    for name in names:  # run ids begin with their start time: newest first
        path = base / name / "plan.json"
        if path.is_file() and not path.is_symlink() and _trusted(path, state):
            plan = read_plan_file(path)
            if plan.component == component:
                # The playbook as that run's plan holds it (validated with the plan); no YAML positions.
                return Loaded(plan.spec, path, plan.playbook.sha256, yamlfile.Document(path, None, ""))
    return None


def _trusted(path: Path, state: Path) -> bool:
    """Whether a run's plan.json is the operator's own record (loading/private.py): its service commands and
    checks are what rollback runs as root on every host, so a plan planted by another user is skipped."""
    from upgrader.loading import private

    try:
        private.check_record(path, state)
    except (OSError, private.Untrusted) as exc:
        log.warning("ignoring %s: %s (a run's plan is used only if only the operator could have written it)",
                    path, exc)
        return False
    return True


def run(args: argparse.Namespace) -> int:
    reason = args.reason.strip()
    if not reason:
        raise RefusedError("--reason must say why (it is journaled and audited)", 'e.g. --reason "INC-4711 rejects"')
    # Break-glass: rollback runs inside market hours and freezes; the bypass itself is the record.
    # The guard is not evaluated here on purpose: market calendars would cost a second of start-up.
    glass = break_glass(reason, datetime.now(UTC), actor=operator())
    inventory = load_inventory(args.inventory)
    hosts = select_hosts(inventory, args.component, targeting.select(args, inventory))
    pool = live.pool_for(inventory, args)
    pool.warm(hosts, args.python)  # SSH handshakes and agent starts overlap loading the playbook and the journal
    try:
        playbook = layout_source(args)
        spec = playbook.model
        inputs = Inputs(playbook, inventory)
        if args.to or not args.yes:
            preview(pool, inputs, hosts, args)
        who = operator()
        aborted = durable.abort_running(args, spec.component, who, reason)  # a Temporal run of it stops first
        run_id = new_run_id(spec.component, datetime.now(UTC))
        journal = Journal.create(args.state_dir, run_id)
        journal.record(Event.RUN_START, kind="rollback", run=run_id, component=spec.component, to=args.to,
                       reason=reason, operator=who, hosts=hosts, limit=args.limit or None, argv=sys.argv[1:],
                       layout=str(playbook.path), break_glass=True,
                       guard=glass.to_dict())
        if aborted:
            journal.record(Event.ABORTED_RUNS, runs=aborted, reason=reason, operator=who)
        audit(args.state_dir, action="rollback", run=run_id, component=spec.component, reason=reason,
              operator=who, hosts=hosts, to=args.to)
        # The sender is closed however this ends: an exception after the start must not drop its notices.
        with notifier(inventory.model, lambda: datetime.now(UTC)) as notify:
            target = args.to or "previous"
            notify("rollback-started", component=spec.component, version=target, run=run_id, operator=who,
                   message=f"emergency rollback of {len(hosts)} host(s) by {who}: {reason}", hosts=len(hosts))
            with Progress(args.log_format) as progress:
                progress.event("run", f"rollback {run_id}: {spec.component} on {len(hosts)} host(s) by {who}: {reason}")
                outcomes = rollback_hosts(pool, spec, hosts, journal, operator=who, reason=reason, to=args.to,
                                          groups=plan_groups.limits(inventory.model, hosts),
                                          python=args.python)
            code = exit_code(outcomes)
            failed = [o.host for o in outcomes.values() if not o.ok]
            message = "all hosts back and verified" if not failed else f"NOT rolled back: {', '.join(failed)}"
            journal.record(Event.RUN_END, status=RunStatus.ROLLBACK_FAILED if failed else RunStatus.SUCCEEDED,
                           exit_code=int(code),
                           message=message, handshake_retries=pool.handshake_retries,
                           hosts={h: {"state": HostState.ROLLED_BACK if o.ok else HostState.ROLLBACK_FAILED,
                                      "detail": o.detail, "version": o.after, "definition": o.definition}
                                  for h, o in outcomes.items()})
            audit(args.state_dir, action="rollback-end", run=run_id, exit_code=int(code), failed=failed)
            notify("rollback-finished", component=spec.component, version=target, run=run_id, exit_code=int(code),
                   message=message, failed=len(failed))
        live.export_metrics(args)
        dcs = {name: dc for dc, name, _ in iter_hosts(inventory.model)}
        progress.summary(f"rollback {spec.component}: {message}", [
            (o.host, dcs[o.host], "rolled-back" if o.ok else "rollback-failed",
             f"{o.before or '?'} → {o.after or '?'} {o.detail}"
             + (f" ({o.definition} service and checks)" if o.definition else "")
             + (f" (took over {o.previous_holder.get('kind')} run {o.previous_holder.get('run')})"
                if o.previous_holder else "")) for o in outcomes.values()])
        say(args, f"{message} (run {run_id})", error=bool(failed))
        return int(code)
    finally:
        pool.close()


def preview(pool, inputs: Inputs, hosts: list[str], args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    """One facts round: refuse before changing anything if --to is not staged everywhere; ask once."""
    spec = inputs.playbook.model
    facts, raw = host_facts.gather(pool, inputs.inventory.model, spec, hosts=hosts, python=args.python)
    unreachable = [h for h, f in facts.hosts.items() if not f.reachable]
    lines = []
    missing = []
    for host in hosts:
        info = raw[host]
        if host in unreachable:
            lines.append(f"  {host:<20} UNREACHABLE ({info.get('error')})")
            continue
        target = args.to or info.get("previous")
        if args.to and args.to not in info.get("staged", []):
            missing.append(f"{host} (staged: {', '.join(info.get('staged', [])) or 'none'})")
        lines.append(f"  {host:<20} {info.get('installed')} → {target or '??'}"
                     + (" (already there)" if target == info.get("installed") else ""))
    if missing:
        raise RefusedError(f"{spec.component} {args.to} is not staged on: {'; '.join(missing)}",
                           "pick a version staged everywhere (`upgrader status`), or narrow with --limit")
    if not args.yes:
        print(f"rollback {spec.component} on {len(hosts)} host(s):")
        print("\n".join(lines))
    live.confirm("roll back now?", args.yes)
