"""Agent programs the engine builds itself: facts, locks and timeouts (pure; no I/O).

The operations of plan steps are built by the planner (planning/operations.py) and read from the
plan; an emergency rollback, which has no plan, builds its rollback operation from the playbook.
"""

from __future__ import annotations

from typing import Any

from upgrader.models.playbook import Playbook
from upgrader.planning.operations import (
    AGENT_FILLS,
    PlaceholderError,
    placeholders,
    release_dir,
    service,
    substitute,
)
from upgrader.planning.operations import rollback_op as _rollback_op

__all__ = ["AGENT_FILLS", "PlaceholderError", "placeholders", "release_dir", "service", "substitute"]


def version_check(spec: Playbook) -> dict[str, Any] | None:
    """The version probe for facts: ``{release}`` and ``{version}`` left for the agent (the current release)."""
    c = next((c for c in spec.checks if c.version is not None), None)
    if c is None or c.version is None:
        return None
    data = c.version.model_dump(mode="json", exclude_none=True)
    if c.version.argv:
        data["argv"] = substitute(c.version.argv, placeholders(spec), defer=AGENT_FILLS)
    return data


def facts_op(spec: Playbook, journal_lines: int = 0) -> dict[str, Any]:
    """Facts: the agent fills in the current release, which only the host knows."""
    return {
        "op": "facts",
        "service": service(spec, defer=AGENT_FILLS),
        "version_check": version_check(spec),
        "journal_lines": journal_lines,
    }


def lock_op(
    mode: str, *, operator: str, plan: str | None, controller: str, kind: str = "apply", reason: str | None = None
) -> dict[str, Any]:
    """The host lock operation; the lock records the run, operator, plan and controller (host:pid) that took it."""
    return {
        "op": "lock",
        "mode": mode,
        "operator": operator,
        "plan": plan,
        "kind": kind,
        "reason": reason,
        "controller": controller,
        "step": f"lock-{mode}",
    }


def rollback_op(spec: Playbook, to: str | None, step: str | None = None) -> dict[str, Any]:
    """An emergency rollback's operation (no plan): back to ``to``, or the host's recorded previous release.

    ``recorded``: the agent uses the service and checks it recorded when that release was installed
    and verified (agent.recorded_definition), if it trusts its record; ``spec``'s are the fallback.
    """
    return {**_rollback_op(spec, to), "recorded": True, "step": step}


def hop_timeout(spec: Playbook) -> float:
    """Upper bound for one hop program: stop + migrate + start + every check's retries."""
    migrate = max([m.timeout for m in [spec.migrate, *(h.migrate for h in spec.via)] if m] or [0.0])
    return spec.service.stop_timeout + spec.service.start_timeout + migrate + checks_budget(spec) + 30


def checks_budget(spec: Playbook) -> float:
    return sum((c.timeout + c.interval) * (c.retries + 1) for c in spec.checks)
