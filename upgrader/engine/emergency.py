"""The emergency rollback as a run: the fleet look, the journal, the audit trail and the notifications.

commands/rollback.py parses the command line, finds the layout and the playbooks at hand, shows the
plan and asks; then ``run`` does the rest here: it journals the run and audits it before any host
is sent anything, rolls the hosts back (engine/rollback.py: one program per host, verified, in
redundancy-group order), journals each host's end and the run's, and notifies start and end.  The
command prints what ``run`` returns.

``look`` is the one facts round before it: what each host runs, what installed it and where the
rollback takes it (HostView); ``refuse_unstaged``, ``refuse_unknown_layout`` and
``requires_conflicts`` refuse, from those answers, what must not start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from upgrader import versions
from upgrader.engine import facts as host_facts
from upgrader.engine import programs
from upgrader.engine.notifier import notifier
from upgrader.engine.pool import Pool
from upgrader.engine.progress import Progress
from upgrader.engine.rollback import OK_ENDS, End, HostOutcome, exit_code, rollback_hosts
from upgrader.errors import ExitCode, RefusedError
from upgrader.journal import Journal, audit, new_run_id
from upgrader.loading.inputs import Loaded
from upgrader.models.inventory import Inventory
from upgrader.models.playbook import Playbook
from upgrader.planning import groups as plan_groups
from upgrader.planning.planner import iter_hosts, runs_component
from upgrader.vocabulary import Event, HostState, RunStatus


@dataclass(frozen=True)
class Layout:
    """Where the component lives and what describes it: a playbook, a root the controller recorded, or
    nothing (``root`` "": each host's own record, agent.recorded_root)."""

    spec: Playbook | None
    root: str
    source: str


@dataclass(frozen=True)
class HostView:
    """What the fleet look found on one host, and what the rollback will do there."""

    host: str
    reachable: bool
    installed: str | None
    target: str | None  # None: nothing to do
    note: str  # why (nothing to do, untouched, already there…)
    answer: dict[str, Any]


def look(
    pool: Pool,
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


@dataclass(frozen=True)
class Request:
    """What the command decided (and the operator confirmed): the rollback ``run`` carries out."""

    component: str
    reason: str
    operator: str
    hosts: list[str]
    layout: Layout
    views: dict[str, HostView]  # the look's answers, per host
    undo: dict[str, dict[str, Any]]  # per host: what its default target undoes (look)
    to: str | None = None  # --to, else each host's previous release
    definitions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # version -> its service and checks
    conflicts: list[str] = field(default_factory=list)  # `requires` broken, allowed by --force-requires
    forced: str | None = None  # --force-requires REASON
    aborted: Sequence[Any] = ()  # Temporal runs of the component stopped first (commands/durable.py)
    guard: dict[str, Any] = field(default_factory=dict)  # the break-glass record (windows.break_glass)
    limit: list[str] | None = None
    argv: list[str] = field(default_factory=list)
    python: str = "python3"


@dataclass(frozen=True)
class Result:
    """How the rollback ended: per host (in the order asked), the exit code and the summary line."""

    run_id: str
    outcomes: dict[str, HostOutcome]
    code: ExitCode
    message: str

    @property
    def failed(self) -> list[str]:
        return [o.host for o in self.outcomes.values() if o.end not in OK_ENDS]


def run(request: Request, pool: Pool, inventory: Inventory, state: Path, progress: Progress) -> Result:
    """Journal, audit and notify the rollback of ``request`` and roll its reachable hosts back (see module doc)."""
    r = request
    run_id = new_run_id(r.component, datetime.now(UTC))
    journal = Journal.create(state, run_id)
    journal.record(
        Event.RUN_START,
        kind="rollback",
        run=run_id,
        component=r.component,
        to=r.to,
        reason=r.reason,
        operator=r.operator,
        hosts=r.hosts,
        limit=r.limit,
        argv=r.argv,
        layout=r.layout.source,
        root=r.layout.root or None,
        break_glass=True,
        guard=r.guard,
        targets={h: v.target for h, v in r.views.items()},
        force_requires={"reason": r.forced, "conflicts": r.conflicts} if r.conflicts else None,
    )
    if r.aborted:
        journal.record(Event.ABORTED_RUNS, runs=r.aborted, reason=r.reason, operator=r.operator)
    audit(
        state,
        action="rollback",
        run=run_id,
        component=r.component,
        reason=r.reason,
        operator=r.operator,
        hosts=r.hosts,
        to=r.to,
    )
    if r.conflicts:
        audit(
            state,
            action="force-requires",
            run=run_id,
            component=r.component,
            reason=r.forced,
            operator=r.operator,
            conflicts=r.conflicts,
        )
    reachable = [h for h in r.hosts if r.views[h].reachable]
    # The sender is closed however this ends: an exception after the start must not drop its notices.
    with notifier(inventory, lambda: datetime.now(UTC)) as notify:
        target = r.to or "previous"
        notify(
            "rollback-started",
            component=r.component,
            version=target,
            run=run_id,
            operator=r.operator,
            message=f"emergency rollback of {len(r.hosts)} host(s) by {r.operator}: {r.reason}",
            hosts=len(r.hosts),
        )
        progress.event("run", f"rollback {run_id}: {r.component} on {len(r.hosts)} host(s) by {r.operator}: {r.reason}")
        for v in r.views.values():  # where each host goes, as the hosts' records say (before it runs)
            progress.event("target", plan_line(v, named=False), host=v.host, installed=v.installed, target=v.target)
        outcomes = rollback_hosts(
            pool,
            r.layout.spec,
            reachable,
            journal,
            operator=r.operator,
            reason=r.reason,
            to=r.to,
            groups=plan_groups.limits(inventory, reachable),
            python=r.python,
            root=r.layout.root,
            undo=None if r.to else r.undo,
            definitions=r.definitions,
            component=r.component,
        )
        for host in r.hosts:  # unreachable at the look: not sent anything, named as such
            if host not in outcomes:
                outcomes[host] = HostOutcome(host, False, None, None, r.views[host].note, end=End.UNREACHABLE)
        result = Result(run_id, {h: outcomes[h] for h in r.hosts}, exit_code(outcomes), summary_message(outcomes))
        journal.record(
            Event.RUN_END,
            status=RunStatus.ROLLBACK_FAILED if result.failed else RunStatus.SUCCEEDED,
            exit_code=int(result.code),
            message=result.message,
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
                for h, o in result.outcomes.items()
            },
        )
        audit(state, action="rollback-end", run=run_id, exit_code=int(result.code), failed=result.failed)
        notify(
            "rollback-finished",
            component=r.component,
            version=target,
            run=run_id,
            exit_code=int(result.code),
            message=result.message,
            failed=len(result.failed),
        )
    return result


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
