"""`upgrader rollback COMPONENT -i INVENTORY --reason "..."`: the fastest safe path back."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from upgrader.cli.logs import say
from upgrader.commands import components as component_names
from upgrader.commands import durable, live, targeting
from upgrader.commands.specs import find_playbook
from upgrader.engine import emergency
from upgrader.engine.emergency import (
    Layout,
    look,
    plan_line,
    refuse_unknown_layout,
    refuse_unstaged,
    requires_conflicts,
)
from upgrader.engine.progress import Progress
from upgrader.engine.rollback import definition_for
from upgrader.errors import InputError, RefusedError
from upgrader.journal import operator
from upgrader.loading import yamlfile
from upgrader.loading.inputs import Loaded, load_inventory, load_playbook, read_plan_file
from upgrader.models.inventory import Inventory
from upgrader.models.playbook import Playbook
from upgrader.planning.limit import Selection
from upgrader.planning.planner import iter_hosts, runs_component
from upgrader.windows import break_glass

log = logging.getLogger(__name__)

HELP = "emergency rollback to the release before the last run (or a named staged one), in parallel, audited"

EPILOG = """\
Each host goes back to the release it ran before the run that installed its current one (a multi-hop
run is undone whole), or to --to.  The run undone is the one that installed the newest release among the
selected hosts: a host that run did not touch, or with no previous release, has nothing to do (said per
host) and is not changed.  No playbook or journal is needed: the hosts record where the component lives,
and the service and checks each release was verified with.  A release with no such record is verified
with the playbook of that version (--playbook, --playbooks, a journaled run), else its checks are
reported as not applicable.  A rollback that leaves another installed component's `requires` unmet is
refused unless --force-requires REASON.  Every host's lock is released when the command ends.

example:
  upgrader rollback ordergw -i inventories/prod-na.yml --reason "INC-4711 rejects" --yes
  upgrader rollback ordergw -i inventories/prod-na.yml --reason "INC-4711" --to 5.0.0 --limit dc:ny5

exit codes: 0 every host rolled back and verified, already there, or had nothing to do; 1 refused before
changing anything (bad input, --to not staged, a `requires` conflict); 2 usage; 4 some host did not end
on a verified release, was unreachable, or another rollback held it, or had nothing to undo but the release it
runs would not start or pass its checks (each is named)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("component")
    parser.add_argument("-i", "--inventory", type=Path, required=True)
    parser.add_argument("--reason", required=True, help="why (break-glass: journaled and audited)")
    parser.add_argument("--to", metavar="VERSION", help="a specific staged version (default: the previous one)")
    targeting.add_argument(parser)
    # Old spellings, hidden: a runbook written before --limit must still work in an incident (it warns).
    targeting.add_deprecated(parser, "--dc", "dc:")
    targeting.add_deprecated(parser, "--hosts", "")
    parser.add_argument(
        "--playbook",
        type=Path,
        help="playbook for the component's layout and service (default: the plan of the newest "
        "run of COMPONENT, else each host's own record); its checks verify only its own version",
    )
    parser.add_argument(
        "--playbooks",
        type=Path,
        metavar="DIR",
        help="playbooks to verify a release the hosts hold no record of (the one of that very "
        "version) and to read other components' `requires` from (default: ./playbooks if present)",
    )
    parser.add_argument(
        "--force-requires",
        metavar="REASON",
        help="roll back even where another installed component's `requires` is then unmet (journaled and audited)",
    )
    parser.add_argument("--yes", action="store_true", help="do not show the plan and ask")
    live.add_connection_arguments(parser)
    live.add_output_arguments(parser)


def select_hosts(inventory: Loaded[Inventory], component: str, selection: Selection | None) -> list[str]:
    """The hosts that run ``component``, within the --limit selection if there is one."""
    inv = inventory.model
    chosen = [
        name
        for _, name, host in iter_hosts(inv)
        if runs_component(inv, host, component) and (selection is None or name in selection.hosts)
    ]
    if not chosen:
        component_names.check(component, inv, inventory.path)  # a misspelt name: did you mean …?
        where = f" among the hosts --limit {','.join(selection.patterns)} selects" if selection else ""
        raise RefusedError(
            f"no host runs {component}{where} in {inventory.path}",
            "check the component and the limit with `upgrader status --limit …`",
        )
    return chosen


def layout_source(args: argparse.Namespace) -> Loaded[Playbook] | None:
    """The playbook for the component's layout and service, if one is at hand; one file read.

    The hosts' own records (where the component is installed, what each release was verified with)
    come first on every host; this is the fallback.  None: no playbook, the hosts' records alone.
    """
    if args.playbook:
        return load_playbook(args.playbook)
    journaled = last_run_plan(args.state_dir, args.component)
    if journaled is not None:
        return journaled
    if args.playbooks:
        try:
            return find_playbook(args.component, args.playbooks)
        except RefusedError:
            return None
    return None


def layout(args: argparse.Namespace) -> Layout:
    loaded = layout_source(args)
    if loaded is not None:
        return Layout(loaded.model, loaded.model.install.root, str(loaded.path))
    root = last_rollback_root(args.state_dir, args.component)
    if root:
        return Layout(None, root, "an earlier rollback run's record")
    return Layout(None, "", "the hosts' own records")


def _runs_newest_first(state: Path, component: str) -> list[Path]:
    from upgrader.journal import runs_dir

    named = re.compile(rf"\d{{8}}T\d{{6}}Z-{re.escape(component)}-[0-9a-f]{{4}}")
    base = runs_dir(state)
    names = sorted((p.name for p in base.iterdir() if named.fullmatch(p.name)), reverse=True) if base.is_dir() else []
    return [base / name for name in names]  # run ids begin with their start time: newest first


def last_run_plan(state: Path, component: str) -> Loaded[Playbook] | None:
    """The playbook of the newest journaled run of ``component`` (its plan.json), read and validated alone."""
    for directory in _runs_newest_first(state, component):
        path = directory / "plan.json"
        if path.is_file() and not path.is_symlink() and _trusted(path, state):
            plan = read_plan_file(path)
            if plan.component == component:
                # The playbook as that run's plan holds it (validated with the plan); no YAML positions.
                return Loaded(plan.spec, path, plan.playbook.sha256, yamlfile.Document(path, None, ""))
    return None


def last_rollback_root(state: Path, component: str) -> str | None:
    """The install root an earlier rollback run of ``component`` recorded (a rollback run has no plan.json)."""
    for directory in _runs_newest_first(state, component):
        path = directory / "journal.jsonl"
        if not path.is_file() or not _trusted(path, state):
            continue
        try:
            with path.open("rb") as fh:
                first = json.loads(fh.readline() or b"null")
        except (OSError, ValueError):
            continue
        if isinstance(first, dict) and first.get("kind") == "rollback" and first.get("component") == component:
            root = first.get("root")
            if isinstance(root, str) and root.startswith("/"):
                return root
    return None


PLANS_PER_COMPONENT = 8  # journaled plans read per component, newest first: start-up stays bounded


def journaled_playbooks(state: Path, component: str | None = None) -> list[Loaded[Playbook]]:
    """The playbooks of the newest journaled apply runs (of ``component`` if given), newest first."""
    from upgrader.journal import runs_dir

    base = runs_dir(state)
    out = []
    seen: dict[str, int] = {}
    for directory in sorted(base.iterdir(), key=lambda p: p.name, reverse=True) if base.is_dir() else []:
        path = directory / "plan.json"
        if component is not None and f"-{component}-" not in directory.name:
            continue
        of = directory.name.split("-", 1)[-1].rsplit("-", 1)[0]  # <time>-<component>-<hex>
        seen[of] = seen.get(of, 0) + 1
        if seen[of] > PLANS_PER_COMPONENT:
            continue
        if path.is_file() and not path.is_symlink() and _trusted(path, state):
            try:
                plan = read_plan_file(path)
            except InputError:
                continue
            out.append(Loaded(plan.spec, path, plan.playbook.sha256, yamlfile.Document(path, None, "")))
    return out


def directory_playbooks(args: argparse.Namespace) -> list[Loaded[Playbook]]:
    """Every valid playbook in --playbooks DIR (default ./playbooks when it exists), read once per command."""
    cached = getattr(args, "_directory_playbooks", None)
    if cached is not None:
        return list(cached)
    directory = args.playbooks or (Path("playbooks") if Path("playbooks").is_dir() else None)
    out = []
    for path in sorted(directory.glob("*.y*ml")) if directory is not None and directory.is_dir() else []:
        try:
            out.append(load_playbook(path))
        except InputError:
            continue
    args._directory_playbooks = out
    return list(out)


def definitions(component: str, versions: set[str], lay: Layout, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Per version rolled back to, the service and checks of that version's own playbook, where one is known
    (--playbook, a journaled run, --playbooks): used on a host that holds no record of that release."""
    out: dict[str, dict[str, Any]] = {}
    if not versions:
        return out
    candidates: list[Loaded[Playbook]] = []
    if lay.spec is not None and args.playbook:
        candidates.append(load_playbook(args.playbook))
    candidates += journaled_playbooks(args.state_dir, component) + directory_playbooks(args)
    for loaded in candidates:
        spec = loaded.model
        if spec.component == component and spec.version in versions and spec.version not in out:
            out[spec.version] = definition_for(spec, spec.version, str(loaded.path))
    return out


def requiring(component: str, args: argparse.Namespace) -> list[Loaded[Playbook]]:
    """Known playbooks of other components that require ``component`` (journaled runs', --playbooks DIR's)."""
    return [
        b
        for b in journaled_playbooks(args.state_dir) + directory_playbooks(args)
        if b.model.component != component and component in b.model.requires
    ]


def also_installed(books: list[Loaded[Playbook]]) -> dict[str, str]:
    """{other component: its install root} for the look to read beside ``component`` (one round trip)."""
    out: dict[str, str] = {}
    for b in books:
        out.setdefault(b.model.component, b.model.install.root)
    return out


def _trusted(path: Path, state: Path) -> bool:
    """Whether a run's plan.json is the operator's own record (loading/private.py): its service commands and
    checks are what rollback runs as root on every host, so a plan planted by another user is skipped."""
    from upgrader.loading import private

    try:
        private.check_record(path, state)
    except (OSError, private.Untrusted) as exc:
        log.warning("ignoring %s: %s (a run's plan is used only if only the operator could have written it)", path, exc)
        return False
    return True


def run(args: argparse.Namespace) -> int:
    reason = args.reason.strip()
    if not reason:
        raise RefusedError("--reason must say why (it is journaled and audited)", 'e.g. --reason "INC-4711 rejects"')
    forced = (args.force_requires or "").strip() or None
    if args.force_requires is not None and forced is None:
        raise RefusedError(
            "--force-requires must say why (it is journaled and audited)",
            'e.g. --force-requires "ordergw goes back next"',
        )
    # Break-glass: rollback runs inside market hours and freezes; the bypass itself is the record.
    # The guard is not evaluated here on purpose: market calendars would cost a second of start-up.
    glass = break_glass(reason, datetime.now(UTC), actor=operator())
    inventory = load_inventory(args.inventory)
    hosts = select_hosts(inventory, args.component, targeting.select(args, inventory))
    pool = live.pool_for(inventory, args)
    pool.warm(hosts, args.python)  # SSH handshakes and agent starts overlap loading the playbook and the journal
    try:
        lay = layout(args)
        component = args.component
        books = requiring(component, args)
        views, undo = look(pool, component, lay, hosts, args.python, args.to, also_installed(books))
        refuse_unstaged(component, views, args.to)
        refuse_unknown_layout(component, views)
        conflicts = requires_conflicts(inventory.model, component, views, books)
        if conflicts and forced is None:
            raise RefusedError(
                f"rolling back {component} would break what other components require: " + "; ".join(conflicts),
                "roll the other component back first, pick another --to, or pass --force-requires REASON (audited)",
            )
        if not args.yes:
            print(f"rollback {component} on {len(views)} host(s):")
            print("\n".join(f"  {plan_line(v)}" for v in views.values()))
        live.confirm("roll back now?", args.yes)
        targets = {v.target for v in views.values() if v.target} | ({args.to} if args.to else set())
        who = operator()
        request = emergency.Request(
            component=component,
            reason=reason,
            operator=who,
            hosts=hosts,
            layout=lay,
            views=views,
            undo=undo,
            to=args.to,
            definitions=definitions(component, targets, lay, args),
            conflicts=conflicts,
            forced=forced,
            aborted=durable.abort_running(args, component, who, reason),  # a Temporal run of it stops first
            guard=glass.to_dict(),
            limit=args.limit or None,
            argv=sys.argv[1:],
            python=args.python,
        )
        with Progress(args.log_format) as progress:
            result = emergency.run(request, pool, inventory.model, args.state_dir, progress)
        live.export_metrics(args)
        print_summary(progress, component, result, inventory.model)
        say(args, f"{result.message} (run {result.run_id})", error=bool(result.failed))
        return int(result.code)
    finally:
        pool.close()


def print_summary(progress: Progress, component: str, result: emergency.Result, inventory: Inventory) -> None:
    """Each host's end, one line each: where it went, whose service and checks verified it, whom it took over from."""
    dcs = {name: dc for dc, name, _ in iter_hosts(inventory)}
    progress.summary(
        f"rollback {component}: {result.message}",
        [
            (
                o.host,
                dcs[o.host],
                str(o.end),
                f"{o.before or '?'} → {o.after or '?'} {o.detail}"
                + (f" ({o.definition} service and checks)" if o.definition in ("recorded", "sent") else "")
                + (
                    f" (took over {o.previous_holder.get('kind')} run {o.previous_holder.get('run')})"
                    if o.previous_holder and o.previous_holder.get("run") != result.run_id
                    else ""
                ),
            )
            for o in result.outcomes.values()
        ],
    )
