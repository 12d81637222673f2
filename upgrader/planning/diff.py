"""What changed between two plans, for reviewers (pure)."""

from __future__ import annotations

from typing import Any

from upgrader.models.plan import Plan


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
            lines.append(f"host {host}: {' → '.join([a.from_version, *a.path])} becomes "
                         f"{' → '.join([b.from_version, *b.path])}")
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
    if old.inventory.sha256 != new.inventory.sha256:
        lines.append(f"inventory {new.inventory.path} changed")
    if old.facts_fingerprint != new.facts_fingerprint:
        lines.append("host facts differ")
    return lines
