"""playbook + inventory + facts → Plan.  Pure: same inputs, byte-identical plan."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from upgrader import versions
from upgrader.models.facts import ComponentFacts, Facts, HostFacts
from upgrader.models.inventory import Datacenter, Host, Inventory
from upgrader.models.plan import (
    ArtifactRef,
    AssumedFacts,
    ControllerFile,
    Gate,
    HostPlan,
    Limit,
    Phase,
    Plan,
    PlanProblem,
    Skip,
    SourceRef,
    Step,
    fingerprint,
)
from upgrader.models.playbook import Canary, Playbook
from upgrader.models.types import trusted
from upgrader.planning import groups
from upgrader.planning.sources import artifact_for, graph_of
from upgrader.planning.steps import for_host, host_undo, step_templates
from upgrader.versions import SchemeVersion as Version


@dataclass(frozen=True)
class _Candidate:
    name: str
    dc: str
    host: Host
    installed: Version
    path: list[Version]  # versions.SchemeVersion: literal equality, the playbook's scheme's order


def facts_from_inventory(inventory: Inventory) -> Facts:
    """Offline facts: the ``installed`` versions the inventory records.

    Hosts that record the same versions share one ``HostFacts``: a large inventory holds a
    handful of version combinations, and one model per host used to dominate planning time.
    Sharing is safe because the models are frozen.  Built with ``model_construct``: the values
    come from the already validated inventory, and re-validating versions would cost as much.
    """
    shared: dict[tuple[tuple[str, str], ...], HostFacts] = {}
    hosts: dict[str, HostFacts] = {}
    for _, name, host in iter_hosts(inventory):
        key = tuple(host.installed.items())
        if key not in shared:
            shared[key] = _recorded_facts(host.installed)
        hosts[name] = shared[key]
    return Facts.model_construct(inventory=inventory.name, hosts=hosts)


def _recorded_facts(installed: dict[str, str]) -> HostFacts:
    # Every field given: model_construct resolves missing defaults slowly.
    components = {
        c: ComponentFacts.model_construct(installed=v, staged=[v], reported_version=None, service=None, lock=None)
        for c, v in installed.items()
    }
    return HostFacts.model_construct(reachable=True, error=None, free_disk_mb=None, components=components)


def iter_hosts(inventory: Inventory) -> Iterator[tuple[str, str, Host]]:
    for dc_name, dc in inventory.datacenters.items():
        for name, host in dc.hosts.items():
            yield dc_name, name, host


def runs_component(inventory: Inventory, host: Host, component: str) -> bool:
    return any(component in inventory.roles.get(role, ()) for role in host.roles)


def make_plan(
    playbook: Playbook,
    inventory: Inventory,
    facts: Facts,
    *,
    playbook_ref: SourceRef,
    inventory_ref: SourceRef,
    limit: Limit | None = None,
    controller_files: list[ControllerFile] | None = None,
) -> Plan:
    """The plan; with ``limit``, one for its hosts only (the others are not looked at, nor listed as skipped).

    ``controller_files``: the files the run reads on the controller with their sha256, as the caller
    read them (loading/pins.py; the planner reads no file), recorded so that `apply` can refuse a change.
    """
    # Every object below is built from validated models, so it is constructed without re-validation
    # (``trusted``, ``model_construct``): for 10,000 hosts, validating ~40,000 objects again would cost
    # about half as much as the planning itself.
    scheme = playbook.version_scheme
    target = versions.parse(playbook.version, scheme)
    graph = graph_of(playbook)
    path_from = functools.cache(graph.path_from)
    requires = {comp: versions.spec(spec, scheme) for comp, spec in sorted(playbook.requires.items())}
    problems: list[PlanProblem] = []
    skipped: list[Skip] = []
    assumed: dict[str, AssumedFacts] = {}
    candidates: dict[str, list[_Candidate]] = {}
    # hosts with the same versions share one (frozen) model
    assumed_facts = functools.cache(functools.partial(_assumed_facts, scheme))

    selected = frozenset(limit.hosts) if limit is not None else None
    for dc_name, name, host in iter_hosts(inventory):
        if selected is not None and name not in selected:
            continue
        if not runs_component(inventory, host, playbook.component):
            skipped.append(_skip(name, dc_name, f"no role runs {playbook.component}"))
            continue
        host_facts = facts.hosts.get(name)
        comp = host_facts.components.get(playbook.component) if host_facts else None
        unreachable = (host_facts.error or "no answer") if host_facts is not None and not host_facts.reachable else None
        # Everything read from the facts below is recorded, so that `apply plan.json` can plan again.
        assumed[name] = assumed_facts(
            comp.installed if comp else None,
            tuple(comp.staged) if comp else (),
            _required_versions(requires, host_facts),
            unreachable,
        )
        if unreachable is not None:
            problems.append(
                _problem(
                    name,
                    f"{name} was unreachable: {unreachable}",
                    "fix access or remove the host from the inventory, then plan again",
                )
            )
            continue
        if comp is None or comp.installed is None:
            problems.append(
                _problem(
                    name,
                    f"no installed version of {playbook.component} known for {name}",
                    "gather facts (`upgrader facts`) or set 'installed' in the inventory",
                )
            )
            continue
        try:
            installed = versions.parse(comp.installed, scheme)
        except ValueError as exc:  # the host's literal is not a version of the playbook's scheme
            message, _, hint = str(exc).partition(" — ")
            problems.append(_problem(name, f"{name}: installed {playbook.component} {message}", hint))
            continue
        if installed == target:  # the literals as written and as reported: never a normalised form
            skipped.append(_skip(name, dc_name, f"already on {target}"))
            continue
        if installed > target:
            skipped.append(
                _skip(name, dc_name, f"on {installed}, newer than {target} (use `upgrader rollback` to go back)")
            )
            continue
        path = path_from(installed)
        if path is None:
            problems.append(
                _problem(
                    name,
                    f"{name}: no upgrade path from {installed} to {target}",
                    f"{target} accepts {playbook.upgrade_from}; add a 'via' hop that accepts {installed}",
                )
            )
            continue
        unmet = _unmet_requires(requires, host_facts, name)
        if unmet:
            problems.extend(_problem(name, m, f"upgrade it first, then plan {playbook.component} again") for m in unmet)
            continue
        candidates.setdefault(dc_name, []).append(_Candidate(name, dc_name, host, installed, path))

    members = groups.membership(inventory)
    phases = _phases(playbook, inventory, candidates, members)
    by_name = _by_name(candidates)
    canaries = {h for ph in phases if ph.kind == "canary" for h in ph.hosts}
    templates = functools.cache(functools.partial(step_templates, playbook))
    host_plans = [_host_plan(by_name[h], ph.index, h in canaries, templates) for ph in phases for h in ph.hosts]
    releases = sorted({v for hp in host_plans for v in hp.path}, key=lambda v: versions.parse(v, scheme))
    plan = Plan.model_construct(
        component=playbook.component,
        vendor=playbook.vendor,
        target_version=str(target),
        playbook=playbook_ref,
        inventory=inventory_ref,
        spec=playbook,
        artifacts=[_artifact_ref(playbook, v) for v in releases],
        facts_fingerprint=_facts_fingerprint(assumed),
        facts_assumed=dict(sorted(assumed.items())),
        phases=phases,
        hosts=host_plans,
        skipped=skipped,
        problems=problems,
        limit=limit,
        groups=groups.limits(inventory, [h.host for h in host_plans]),
        controller_files=list(controller_files or []),
    )
    return plan.sealed()


def _host_plan(c: _Candidate, phase: int, canary: bool, templates: Callable[..., list[Step]]) -> HostPlan:
    path = tuple(str(v) for v in c.path)
    template = templates(str(c.installed), path, canary)
    steps = for_host(template, c.name)
    return trusted(
        HostPlan,
        host=c.name,
        datacenter=c.dc,
        address=c.host.address,
        from_version=str(c.installed),
        path=list(path),
        phase=phase,
        canary=canary,
        steps=steps,
        undo=host_undo(template),
    )


def _facts_fingerprint(assumed: dict[str, AssumedFacts]) -> str:
    # Hosts share a handful of AssumedFacts objects: one dict each, not one per host (fewer objects
    # for the cyclic garbage collector, which otherwise walks the whole plan again and again).
    shared: dict[int, dict[str, object]] = {}
    data = {}
    for host, facts in sorted(assumed.items()):
        key = id(facts)
        if key not in shared:
            shared[key] = facts.to_dict()
        data[host] = shared[key]
    return fingerprint(data)


def _assumed_facts(
    scheme: versions.Scheme,
    installed: str | None,
    staged: tuple[str, ...],
    requires: tuple[tuple[str, str | None], ...],
    unreachable: str | None,
) -> AssumedFacts:
    return trusted(
        AssumedFacts,
        installed=installed,
        staged=sorted(staged, key=lambda v: versions.sort_key(v, scheme)),
        requires=dict(requires),
        unreachable=unreachable,
    )


def _required_versions(
    requires: dict[str, versions.Spec], facts: HostFacts | None
) -> tuple[tuple[str, str | None], ...]:
    """The installed version of each required component, as ``_unmet_requires`` reads it."""
    if not requires:
        return ()
    out = []
    for comp in requires:
        other = facts.components.get(comp) if facts else None
        out.append((comp, other.installed if other else None))
    return tuple(out)


def facts_from_plan(plan: Plan) -> Facts:
    """The facts a plan assumed, as the planner read them: planning again from these gives the same plan.

    Validated (a plan file is outside input): a version that is not one is refused here, not by the planner.
    """
    hosts: dict[str, HostFacts] = {}
    for name, assumed in plan.facts_assumed.items():
        components = {
            comp: ComponentFacts(installed=version, reported_version=None, service=None)
            for comp, version in assumed.requires.items()
        }
        components[plan.component] = ComponentFacts(
            installed=assumed.installed, staged=assumed.staged, reported_version=None, service=None
        )
        hosts[name] = HostFacts(reachable=assumed.unreachable is None, error=assumed.unreachable, components=components)
    return Facts(inventory=plan.inventory.name or "inventory", hosts=hosts)


def _skip(host: str, dc: str, reason: str) -> Skip:
    return trusted(Skip, host=host, datacenter=dc, reason=reason)


def _problem(host: str, message: str, hint: str) -> PlanProblem:
    return trusted(PlanProblem, host=host, message=message, hint=hint)


def _by_name(candidates: dict[str, list[_Candidate]]) -> dict[str, _Candidate]:
    return {c.name: c for group in candidates.values() for c in group}


def _unmet_requires(requires: dict[str, versions.Spec], facts: HostFacts | None, host: str) -> list[str]:
    unmet = []
    for comp, spec in requires.items():
        other = facts.components.get(comp) if facts else None
        have = other.installed if other else None
        try:
            ok = have is not None and spec.contains(versions.parse(have, spec.scheme))
        except ValueError:
            ok = False
        if not ok:
            unmet.append(f"{host}: needs {comp} {spec}, has {have or 'none'}")
    return unmet


def _dc_order(playbook: Playbook, inventory: Inventory) -> list[str]:
    # dict.fromkeys: a datacenter listed twice must not be rolled out twice (validation refuses it too).
    order = list(dict.fromkeys(dc for dc in playbook.rollout.datacenter_order if dc in inventory.datacenters))
    return order + [dc for dc in inventory.datacenters if dc not in order]


def _batch_size(batch: int | str, population: int) -> int:
    if isinstance(batch, int):
        return batch
    return max(1, math.ceil(population * int(batch.rstrip("%")) / 100))


def _pick_canaries(group: list[_Candidate], count: int, members: groups.Membership) -> list[_Candidate]:
    preferred = [c for c in group if c.host.canary] + [c for c in group if not c.host.canary]
    return groups.pick(preferred, count, members, _name)


def _name(c: _Candidate) -> str:
    return c.name


def _phases(
    playbook: Playbook, inventory: Inventory, candidates: dict[str, list[_Candidate]], members: groups.Membership
) -> list[Phase]:
    canary, rollout = playbook.canary, playbook.rollout
    dcs = [dc for dc in _dc_order(playbook, inventory) if candidates.get(dc)]
    phases: list[Phase] = []
    entering: dict[int, str] = {}  # index of a datacenter's first phase -> its name, for manual pauses
    global_canaries: set[str] = set()
    if canary.scope == "global" and canary.hosts and dcs:
        pool = [c for dc in dcs for c in candidates[dc]]
        chosen = _pick_canaries(pool, canary.hosts, members)
        global_canaries = {c.name for c in chosen}
        phases.append(
            Phase.model_construct(
                index=0, kind="canary", datacenter=None, hosts=[c.name for c in chosen], bake=canary.bake
            )
        )
    for n, dc in enumerate(dcs):
        group = [c for c in candidates[dc] if c.name not in global_canaries]
        manual = rollout.pause_between_datacenters == "manual"
        pause = float(rollout.pause_between_datacenters) if n and not manual else 0.0
        first_of_dc = len(phases)
        if canary.scope == "datacenter" and canary.hosts and group:
            chosen = _pick_canaries(group, canary.hosts, members)
            names = {c.name for c in chosen}
            phases.append(
                Phase.model_construct(
                    index=len(phases),
                    kind="canary",
                    datacenter=dc,
                    hosts=[c.name for c in chosen],
                    bake=canary.bake,
                    pause_before=pause,
                )
            )
            group = [c for c in group if c.name not in names]
            pause = 0.0
        size = _batch_size(rollout.batch, len(candidates[dc]))
        for wave in groups.split(group, size, members, _name):  # no wave over a redundancy group's limit
            phases.append(
                Phase.model_construct(
                    index=len(phases), kind="wave", datacenter=dc, hosts=[c.name for c in wave], pause_before=pause
                )
            )
            pause = 0.0
        if manual and n and first_of_dc < len(phases):
            entering[first_of_dc] = dc
    return _gated(phases, canary, entering)


def _gated(phases: list[Phase], canary: Canary, entering: dict[int, str]) -> list[Phase]:
    """Manual gates: after each canary when promotion is manual, before each next datacenter when asked.

    A gate stands before the phase that waits on it; a phase both after a manual canary and the first
    of a manually entered datacenter gets the promote gate, whose one decision covers both.
    """
    gates: dict[int, Gate] = {}
    for i, dc in entering.items():
        gates[i] = Gate(
            id=f"enter-{dc}", kind="datacenter", timeout=canary.promote_timeout, on_timeout=canary.on_timeout
        )
    if canary.promote == "manual":
        for i, phase in enumerate(phases[:-1]):
            if phase.kind == "canary":
                gates[i + 1] = Gate(
                    id=f"promote-{phase.datacenter or 'global'}",
                    kind="promote",
                    timeout=canary.promote_timeout,
                    on_timeout=canary.on_timeout,
                    watch=list(phase.hosts),
                )
    return [p.model_copy(update={"gate": gates[i]}) if i in gates else p for i, p in enumerate(phases)]


def _artifact_ref(playbook: Playbook, version: str) -> ArtifactRef:
    art = artifact_for(playbook, version)
    return ArtifactRef(
        version=version,
        file=art.file,
        url=art.url,
        sha256=art.sha256,
        size=art.size,
        strip_components=art.strip_components,
    )


__all__ = ["Datacenter", "facts_from_inventory", "facts_from_plan", "make_plan"]
