"""Is a saved plan still true?  Precise, per-host reasons to refuse it (pure)."""

from __future__ import annotations

from upgrader.models.facts import Facts
from upgrader.models.plan import Plan


def tampered(plan: Plan) -> str | None:
    if not plan.content_hash:
        return "the plan has no content hash"
    actual = plan.compute_hash()
    if actual != plan.content_hash:
        return f"content hash mismatch: file says {plan.content_hash}, content is {actual}"
    return None


def drift(plan: Plan, facts: Facts, *, playbook_sha: str | None, inventory_sha: str) -> list[str]:
    """Everything that differs from what the plan assumed; empty means the plan still holds."""
    reasons = []
    if inventory_sha != plan.inventory.sha256:
        reasons.append(f"inventory {plan.inventory.path} changed since the plan was made")
    if playbook_sha is not None and playbook_sha != plan.playbook.sha256:
        reasons.append(f"playbook {plan.playbook.path} changed since the plan was made")
    for host, assumed in plan.facts_assumed.items():
        hf = facts.hosts.get(host)
        if hf is None or not hf.reachable:
            reasons.append(f"{host}: unreachable ({hf.error if hf else 'no facts'})")
            continue
        now = hf.components.get(plan.component)
        installed = now.installed if now else None
        if installed != assumed.installed:
            reasons.append(f"{host}: now on {installed or 'nothing'}, not {assumed.installed} as planned")
        staged_now = set(now.staged if now else [])
        staged_then = set(assumed.staged)
        if staged_now - staged_then:
            reasons.append(f"{host}: gained staged release(s) {', '.join(sorted(staged_now - staged_then))}")
        if staged_then - staged_now:
            reasons.append(f"{host}: lost staged release(s) {', '.join(sorted(staged_then - staged_now))}")
    return reasons
