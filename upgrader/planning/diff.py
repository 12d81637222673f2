"""What changed between two plans, for reviewers (pure)."""

from __future__ import annotations

from typing import Any

from upgrader.models.plan import Plan
from upgrader.planning.describe import commands


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key in sorted(value):
            out.update(_flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def diff(old: Plan, new: Plan) -> list[str]:
    """One line per difference, most important first: target, hosts, phases, policy, sources."""
    lines: list[str] = []
    if (old.component, old.target_version) != (new.component, new.target_version):
        lines.append(f"target: {old.component} {old.target_version} → {new.component} {new.target_version}")
    before = {h.host: h for h in old.hosts}
    after = {h.host: h for h in new.hosts}
    for host in sorted(before.keys() - after.keys()):
        lines.append(f"host {host}: no longer upgraded")
    for host in sorted(after.keys() - before.keys()):
        h = after[host]
        lines.append(f"host {host}: now upgraded ({' → '.join([h.from_version, *h.path])})")
    for host in sorted(before.keys() & after.keys()):
        a, b = before[host], after[host]
        if (a.from_version, a.path) != (b.from_version, b.path):
            lines.append(
                f"host {host}: {' → '.join([a.from_version, *a.path])} becomes {' → '.join([b.from_version, *b.path])}"
            )
        if a.canary != b.canary:
            lines.append(f"host {host}: {'now' if b.canary else 'no longer'} a canary")
        if a.phase != b.phase:
            lines.append(f"host {host}: phase {a.phase + 1} → {b.phase + 1}")
    if [(p.kind, p.datacenter, p.hosts) for p in old.phases] != [(p.kind, p.datacenter, p.hosts) for p in new.phases]:
        lines.append(f"phases: {len(old.phases)} → {len(new.phases)}")
    spec_a, spec_b = _flatten(old.spec.model_dump(mode="json")), _flatten(new.spec.model_dump(mode="json"))
    for key in sorted(spec_a.keys() | spec_b.keys()):
        if spec_a.get(key) != spec_b.get(key):
            lines.append(f"playbook {key}: {spec_a.get(key)!r} → {spec_b.get(key)!r}")
    old_problems = {p.message for p in old.problems}
    new_problems = {p.message for p in new.problems}
    lines += [f"problem fixed: {m}" for m in sorted(old_problems - new_problems)]
    lines += [f"new problem: {m}" for m in sorted(new_problems - old_problems)]
    if old.limit != new.limit:
        shown = [",".join(p.limit.patterns) if p.limit else "every host" for p in (old, new)]
        lines.append(f"limit: {shown[0]} → {shown[1]}")
    lines += _command_changes(old, new)
    lines += _pin_changes(old, new)
    if old.schema_version != new.schema_version:
        lines.append(f"plan schema {old.schema_version} → {new.schema_version}")
    if old.inventory.sha256 != new.inventory.sha256:
        lines.append(f"inventory {new.inventory.path} changed")
    if old.facts_fingerprint != new.facts_fingerprint:
        lines.append("host facts differ")
    return lines


def _command_changes(old: Plan, new: Plan) -> list[str]:
    """Every command, probe or module the steps run that is new, gone or runs something else."""
    before = {(c.what, c.run): c for c in commands(old)}
    after = {(c.what, c.run): c for c in commands(new)}
    gone = [c for key, c in before.items() if key not in after]
    came = [c for key, c in after.items() if key not in before]
    lines = []
    for c in gone:
        replaced = [n for n in came if n.what == c.what]
        if replaced:
            lines += [f"{c.what}: runs {n.run} instead of {c.run} [{', '.join(n.steps)}]" for n in replaced]
        else:
            lines.append(f"{c.what} no longer runs: {c.run}")
    changed = {c.what for c in gone}
    lines += [f"{c.what} now runs: {c.run} [{', '.join(c.steps)}]" for c in came if c.what not in changed]
    return lines


def _pin_changes(old: Plan, new: Plan) -> list[str]:
    """Controller files whose pinned sha256 differs, or that one plan pins and the other does not."""
    before = {f.path: f.sha256 for f in old.controller_files}
    after = {f.path: f.sha256 for f in new.controller_files}
    lines = []
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        if a == b:
            continue
        if a is None:
            lines.append(f"controller file {path}: now pinned ({b}); it runs on the controller")
        elif b is None:
            lines.append(f"controller file {path}: no longer pinned (was {a})")
        else:
            lines.append(f"controller file {path}: content changed ({a} → {b}); review the new code")
    return lines
