"""`upgrader rollback COMPONENT -i INVENTORY --reason "..."`: the fastest safe path back."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from upgrader import versions
from upgrader.cli.logs import say
from upgrader.commands import components as component_names
from upgrader.commands import durable, live, targeting
from upgrader.commands.specs import find_playbook
from upgrader.engine import facts as host_facts
from upgrader.engine import programs
from upgrader.engine.journal import Journal, audit, new_run_id, operator
from upgrader.engine.notifier import notifier
from upgrader.engine.progress import Progress
from upgrader.engine.rollback import OK_ENDS, End, HostOutcome, definition_for, exit_code, rollback_hosts
from upgrader.engine.vocabulary import Event, HostState, RunStatus
from upgrader.errors import InputError, RefusedError
from upgrader.loading import yamlfile
from upgrader.loading.inputs import Loaded, load_inventory, load_playbook, read_plan_file
from upgrader.models.inventory import Inventory
from upgrader.models.playbook import Playbook
from upgrader.planning import groups as plan_groups
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


@dataclass(frozen=True)
class Layout:
    """Where the component lives and what describes it: a playbook, a root the controller recorded, or
    nothing (``root`` "": each host's own record, agent.recorded_root)."""

    spec: Playbook | None
    root: str
    source: str


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
    from upgrader.engine.journal import runs_dir

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
    from upgrader.engine.journal import runs_dir

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


@dataclass(frozen=True)
class HostView:
    """What the fleet look found on one host, and what the rollback will do there."""

    host: str
    reachable: bool
    installed: str | None
    target: str | None  # None: nothing to do
    note: str  # why (nothing to do, untouched, already there…)
    answer: dict[str, Any]


def look(  # type: ignore[no-untyped-def]
    pool,
    component: str,
    lay: Layout,
    hosts: list[str],
    python: str,
    to: str | None,
    also: dict[str, str] | None = None,
) -> tuple[dict[str, HostView], dict[str, dict[str, Any]]]:
    """One facts round: what each host runs, what installed it, what it would go back to; and ``undo``
    per host (the runs being rolled back, and the host's clock now: a switch after it is undone too)."""
    op: dict[str, Any] = (
        programs.facts_op(lay.spec)
        if lay.spec
        else {"op": "facts", "service": None, "version_check": None, "journal_lines": 0}
    )
    if also:  # other components' installed versions, for their `requires`, in the same round trip
        op["also"] = [[other, root] for other, root in sorted(also.items())]
    answers = host_facts.probe(pool, hosts, component, lay.root, op, python)
    raw: dict[str, dict[str, Any]] = {}
    for host in hosts:
        res = answers[host].value
        raw[host] = (
            res.ops[0].data
            if res is not None and res.ok
            else {"error": str(answers[host].error) if res is None else res.error}
        )
    # The run being undone: the one that installed the newest release among these hosts.
    installed = {h: r for h, r in raw.items() if "error" not in r and r.get("installed") and r.get("installed_by")}
    newest = max(
        installed.values(),
        key=lambda r: (str(r["installed_by"].get("at") or ""), _number(r["installed_by"].get("t"))),
        default=None,
    )
    runs = sorted(
        {
            str(r["installed_by"].get("run"))
            for r in installed.values()
            if newest is not None and r.get("installed") == newest.get("installed")
        }
    )
    views: dict[str, HostView] = {}
    undo: dict[str, dict[str, Any]] = {}
    for host in hosts:
        r = raw[host]
        if "error" in r:
            views[host] = HostView(host, False, None, None, f"unreachable ({r['error']})", r)
            continue
        undo[host] = {"runs": runs, "seen": r.get("clock")}
        current = r.get("installed")
        by = r.get("installed_by") or {}
        if r.get("no_record"):
            view = HostView(host, True, None, None, "nothing to do: no record of it on this host", r)
        elif to:
            view = HostView(host, True, current, to, "already there" if to == current else f"--to {to}", r)
        elif not current:
            view = HostView(host, True, None, None, "nothing to do: nothing installed", r)
        elif not by:
            view = HostView(host, True, current, None, f"nothing to do: no previous release recorded for {current}", r)
        elif by.get("run") not in runs:
            view = HostView(
                host,
                True,
                current,
                None,
                f"nothing to do: untouched by run {', '.join(runs)} ({current} installed by run {by.get('run')})",
                r,
            )
        else:
            view = HostView(host, True, current, r.get("run_start"), f"undoes run {by.get('run')}", r)
        views[host] = view
    return views, undo


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0


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


def requires_conflicts(
    inventory: Inventory, component: str, views: dict[str, HostView], books: list[Loaded[Playbook]]
) -> list[str]:
    """Hosts where another installed component's `requires` would be unmet after the rollback: each named
    with both components.  The other component's `requires` come from the playbook of the version it runs
    (a journaled run's, or --playbooks / ./playbooks); its version from the look (``also``)."""
    moving = {h: v for h, v in views.items() if v.reachable and v.target and v.target != v.installed}
    runs_it = {
        (n, c)
        for _, n, h in iter_hosts(inventory)
        for c in {b.model.component for b in books}
        if runs_component(inventory, h, c)
    }
    problems = []
    for host, view in moving.items():
        found = view.answer.get("also")
        for other, have in sorted(found.items() if isinstance(found, dict) else []):
            book = next((b for b in books if b.model.component == other and b.model.version == have), None)
            if (host, other) not in runs_it or book is None:
                continue
            spec = book.model
            wanted = spec.requires[component]
            try:
                ok = versions.spec(wanted, spec.version_scheme).contains(
                    versions.parse(str(view.target), spec.version_scheme)
                )
            except ValueError:
                ok = False
            if not ok:
                problems.append(
                    f"{host}: {other} {have} requires {component} {wanted}; rolling back to {view.target} breaks it"
                )
    return problems


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
        defs = definitions(component, targets, lay, args)
        who = operator()
        aborted = durable.abort_running(args, component, who, reason)  # a Temporal run of it stops first
        run_id = new_run_id(component, datetime.now(UTC))
        journal = Journal.create(args.state_dir, run_id)
        journal.record(
            Event.RUN_START,
            kind="rollback",
            run=run_id,
            component=component,
            to=args.to,
            reason=reason,
            operator=who,
            hosts=hosts,
            limit=args.limit or None,
            argv=sys.argv[1:],
            layout=lay.source,
            root=lay.root or None,
            break_glass=True,
            guard=glass.to_dict(),
            targets={h: v.target for h, v in views.items()},
            force_requires={"reason": forced, "conflicts": conflicts} if conflicts else None,
        )
        if aborted:
            journal.record(Event.ABORTED_RUNS, runs=aborted, reason=reason, operator=who)
        audit(
            args.state_dir,
            action="rollback",
            run=run_id,
            component=component,
            reason=reason,
            operator=who,
            hosts=hosts,
            to=args.to,
        )
        if conflicts:
            audit(
                args.state_dir,
                action="force-requires",
                run=run_id,
                component=component,
                reason=forced,
                operator=who,
                conflicts=conflicts,
            )
        reachable = [h for h in hosts if views[h].reachable]
        # The sender is closed however this ends: an exception after the start must not drop its notices.
        with notifier(inventory.model, lambda: datetime.now(UTC)) as notify:
            target = args.to or "previous"
            notify(
                "rollback-started",
                component=component,
                version=target,
                run=run_id,
                operator=who,
                message=f"emergency rollback of {len(hosts)} host(s) by {who}: {reason}",
                hosts=len(hosts),
            )
            with Progress(args.log_format) as progress:
                progress.event("run", f"rollback {run_id}: {component} on {len(hosts)} host(s) by {who}: {reason}")
                for v in views.values():  # where each host goes, as the hosts' records say (before it runs)
                    progress.event(
                        "target", plan_line(v, named=False), host=v.host, installed=v.installed, target=v.target
                    )
                outcomes = rollback_hosts(
                    pool,
                    lay.spec,
                    reachable,
                    journal,
                    operator=who,
                    reason=reason,
                    to=args.to,
                    groups=plan_groups.limits(inventory.model, reachable),
                    python=args.python,
                    root=lay.root,
                    undo=None if args.to else undo,
                    definitions=defs,
                    component=component,
                )
            for host in hosts:  # unreachable at the look: not sent anything, named as such
                if host not in outcomes:
                    outcomes[host] = HostOutcome(host, False, None, None, views[host].note, end=End.UNREACHABLE)
            outcomes = {h: outcomes[h] for h in hosts}
            code = exit_code(outcomes)
            failed = [o.host for o in outcomes.values() if o.end not in OK_ENDS]
            message = summary_message(outcomes)
            journal.record(
                Event.RUN_END,
                status=RunStatus.ROLLBACK_FAILED if failed else RunStatus.SUCCEEDED,
                exit_code=int(code),
                message=message,
                handshake_retries=pool.handshake_retries,
                hosts={
                    h: {
                        "state": host_state(o),
                        "end": str(o.end),
                        "detail": o.detail,
                        "version": o.after,
                        "changed": o.changed,
                        "definition": o.definition,
                    }
                    for h, o in outcomes.items()
                },
            )
            audit(args.state_dir, action="rollback-end", run=run_id, exit_code=int(code), failed=failed)
            notify(
                "rollback-finished",
                component=component,
                version=target,
                run=run_id,
                exit_code=int(code),
                message=message,
                failed=len(failed),
            )
        live.export_metrics(args)
        dcs = {name: dc for dc, name, _ in iter_hosts(inventory.model)}
        progress.summary(
            f"rollback {component}: {message}",
            [
                (
                    o.host,
                    dcs[o.host],
                    str(o.end),
                    f"{o.before or '?'} → {o.after or '?'} {o.detail}"
                    + (f" ({o.definition} service and checks)" if o.definition in ("recorded", "sent") else "")
                    + (
                        f" (took over {o.previous_holder.get('kind')} run {o.previous_holder.get('run')})"
                        if o.previous_holder and o.previous_holder.get("run") != run_id
                        else ""
                    ),
                )
                for o in outcomes.values()
            ],
        )
        say(args, f"{message} (run {run_id})", error=bool(failed))
        return int(code)
    finally:
        pool.close()


def host_state(o: HostOutcome) -> HostState:
    if o.end in (End.ROLLED_BACK, End.ALREADY_THERE):
        return HostState.ROLLED_BACK
    if o.end is End.NOTHING_TO_DO:
        return HostState.UNTOUCHED
    if o.end is End.UNREACHABLE:
        return HostState.UNREACHABLE
    if o.end is End.UNHEALTHY:  # on the release it ran before, which fails: not a rollback that failed
        return HostState.FAILED
    if o.end in (End.REFUSED, End.WITHHELD):
        return HostState.UNTOUCHED if not o.changed else HostState.ROLLBACK_FAILED
    return HostState.ROLLBACK_FAILED


def summary_message(outcomes: dict[str, HostOutcome]) -> str:
    by: dict[End, list[str]] = {}
    for o in outcomes.values():
        by.setdefault(o.end, []).append(o.host)
    sick = by.get(End.UNHEALTHY, [])
    bad = [h for e, hs in by.items() if e not in OK_ENDS | {End.UNHEALTHY} for h in hs]
    back = len(by.get(End.ROLLED_BACK, [])) + len(by.get(End.ALREADY_THERE, []))
    nothing = len(by.get(End.NOTHING_TO_DO, []))
    if sick:
        unhealthy = (
            f"UNHEALTHY: {', '.join(sick)} (nothing to roll back; the release each runs does not start or pass "
            "its checks)"
        )
        rest = (
            summary_message({h: o for h, o in outcomes.items() if o.end is not End.UNHEALTHY})
            if len(sick) < len(outcomes)
            else ""
        )
        return unhealthy + (f"; {rest}" if rest else "")
    if not bad:
        return (
            f"{back} host(s) back and verified" + (f", {nothing} with nothing to do" if nothing else "")
            if back
            else f"nothing to roll back: {nothing} host(s) had nothing to undo"
        )
    done = (
        ", ".join([f"{back} back and verified"] * bool(back) + [f"{nothing} with nothing to do"] * bool(nothing))
        or "none back"
    )
    return f"NOT rolled back: {', '.join(bad)} ({done}; this rollback holds no lock: see `upgrader status`)"


def refuse_unknown_layout(component: str, views: dict[str, HostView]) -> None:
    """A host upgrader has records of but not where the component lives (an older agent's records): only a
    playbook can say; refused before anything changes.  A host with no record at all has nothing to undo."""
    unknown = [h for h, v in views.items() if v.reachable and v.answer.get("no_record") and v.answer.get("records")]
    if unknown:
        raise RefusedError(
            f"upgrader has records of {component} on {', '.join(unknown)} but not where it is "
            "installed (written before hosts recorded it)",
            f"name its playbook: --playbook playbooks/{component}-….yml",
        )


def refuse_unstaged(component: str, views: dict[str, HostView], to: str | None) -> None:
    """--to must be staged on every reachable host: refused before anything is changed."""
    if not to:
        return
    missing = [
        f"{h} (staged: {', '.join(v.answer.get('staged', [])) or 'none'})"
        for h, v in views.items()
        if v.reachable and not v.answer.get("no_record") and to not in v.answer.get("staged", [])
    ]
    if missing:
        raise RefusedError(
            f"{component} {to} is not staged on: {'; '.join(missing)}",
            "pick a version staged everywhere (`upgrader status`), or narrow with --limit",
        )


def plan_line(v: HostView, named: bool = True) -> str:
    """One host's line of the plan: where it goes and why, or why it has nothing to do."""
    name = f"{v.host:<20} " if named else ""
    if not v.reachable:
        return f"{name}UNREACHABLE: {v.note}"
    if v.target:
        return f"{name}{v.installed or '-'} → {v.target} ({v.note})"
    return f"{name}{v.installed or '-'}: {v.note}"
