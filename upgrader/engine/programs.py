"""Agent programs for plan steps, built from the playbook spec (pure; no I/O).

Placeholders in playbook commands are substituted here, per argument: the
result is still an argv list, so a hostile value can never become shell.  A
placeholder never silently becomes an empty string: ``substitute`` raises when
one has no value, and validation (models/playbook.py) refuses the fields where
one could have none.  ``{release}`` and ``{version}`` name the release a program
runs for: the new one in a hop, the current one in prechecks and facts, the
target in a rollback.  Where the controller cannot know it before the host
answers (facts; an emergency rollback to the recorded previous release), they
are left for the agent, which fills them in with the release it found
(agent.with_release).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from upgrader.models.playbook import Check, Playbook, Service
from upgrader.planning.sources import migration_for

# Left in place for the agent: it knows the current release, or the rollback target, once it looks.
AGENT_FILLS = ("release", "version")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class PlaceholderError(ValueError):
    """A command names a placeholder that has no value where it runs (validation should have refused it)."""


def release_dir(spec: Playbook, version: str) -> str:
    return f"{spec.install.root}/releases/{version}"


def placeholders(spec: Playbook, version: str | None = None, previous: str | None = None) -> dict[str, str]:
    """The placeholders' values for a program that runs for ``version``, coming from ``previous``.

    A placeholder without a value is absent, never empty.
    """
    values = {"root": spec.install.root, "component": spec.component}
    if version is not None:
        values.update(release=release_dir(spec, version), version=version)
    if previous is not None:
        values.update(previous=release_dir(spec, previous), from_version=previous)
    return values


def substitute(argv: list[str], values: Mapping[str, str], *, defer: Collection[str] = ()) -> list[str]:
    """``argv`` with each ``{name}`` replaced by its value, in one pass (a value is never substituted again).

    A name in ``defer`` is left as it is (the agent fills it in); any other placeholder without a
    value raises PlaceholderError, naming it and the argument.
    """

    def one(arg: str) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in values:
                return values[name]
            if name in defer:
                return match.group(0)
            raise PlaceholderError(f"{{{name}}} has no value in {arg!r} here")

        return _PLACEHOLDER.sub(value, arg)

    return [one(arg) for arg in argv]


def service(spec: Playbook, version: str | None = None, *, defer: Collection[str] = ()) -> dict[str, Any]:
    """The service as the agent runs it, for the release ``version`` (None: the agent fills it in, with ``defer``)."""
    s: Service = spec.service
    data: dict[str, Any] = {"start_timeout": s.start_timeout, "stop_timeout": s.stop_timeout}
    if s.systemd:
        data["systemd"] = s.systemd
    else:
        values = placeholders(spec, version)
        data.update({k: substitute(getattr(s, k), values, defer=defer) for k in ("start", "stop", "status")})
    return data


def checks(spec: Playbook, items: list[Check] | None = None, version: str | None = None, *,
           defer: Collection[str] = ()) -> list[dict[str, Any]]:
    values = placeholders(spec, version)
    out = []
    for c in spec.checks if items is None else items:
        body = c.model_dump(mode="json", exclude_none=True)
        kind = c.kind
        if kind == "command":
            body["command"]["argv"] = substitute(c.command.argv, values, defer=defer)  # type: ignore[union-attr]
        if kind == "version" and c.version and c.version.argv:
            body["version"]["argv"] = substitute(c.version.argv, values, defer=defer)
        body["kind"] = kind
        out.append(body)
    return out


def log_paths(spec: Playbook) -> list[str]:
    return [c.log.path for c in spec.checks if c.log is not None]


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
    return {"op": "facts", "service": service(spec, defer=AGENT_FILLS), "version_check": version_check(spec),
            "journal_lines": journal_lines}


def lock_op(mode: str, *, operator: str, plan: str | None, kind: str = "apply", reason: str | None = None,
            controller: str | None = None) -> dict[str, Any]:
    return {"op": "lock", "mode": mode, "operator": operator, "plan": plan, "kind": kind, "reason": reason,
            "controller": controller, "step": f"lock-{mode}"}


def precheck_op(spec: Playbook, step: str, current: str) -> dict[str, Any]:
    """Prechecks on the release that is ``current`` (the plan's from_version, confirmed under the lock)."""
    return {"op": "precheck", "step": step, "min_free_disk_mb": spec.prechecks.min_free_disk_mb,
            "healthy_before": spec.prechecks.healthy_before, "checks": checks(spec, version=current),
            "commands": checks(spec, spec.prechecks.commands, version=current)}


def hop_ops(spec: Playbook, host: str, previous: str, version: str, step_ids: dict[str, str]) -> list[dict[str, Any]]:
    """stop → switch → carry over → migrate → start → verify for one release on one host."""
    svc = service(spec, version)
    ops: list[dict[str, Any]] = [
        {"op": "stop", "step": step_ids.get("stop"), "service": service(spec, previous)},  # the release running
        {"op": "switch", "step": step_ids.get("switch"), "version": version},
    ]
    if spec.install.carry_over:
        ops.append({"op": "carry_over", "step": step_ids.get("switch"), "version": version, "from": previous,
                    "files": list(spec.install.carry_over)})
    migration = migration_for(spec, version)
    if migration is not None:
        ops.append({"op": "migrate", "step": step_ids.get("migrate"), "version": version, "from": previous,
                    "files": list(spec.install.config_files),
                    "argv": substitute(migration.command, placeholders(spec, version, previous)),
                    "timeout": migration.timeout})
    ops += [
        {"op": "start", "step": step_ids.get("start"), "service": svc, "logs": log_paths(spec)},
        {"op": "verify", "step": step_ids.get("verify"), "service": svc, "checks": checks(spec, version=version),
         "expect_version": version},
    ]
    return ops


def bake_op(spec: Playbook, version: str, step: str | None) -> dict[str, Any]:
    return {"op": "bake", "step": step, "service": service(spec, version), "checks": checks(spec, version=version),
            "expect_version": version, "duration": spec.canary.bake, "interval": spec.canary.bake_interval}


def rollback_op(spec: Playbook, to: str | None, step: str | None = None) -> dict[str, Any]:
    """Back to ``to``; without one, to the host's recorded previous release, which the agent fills in."""
    defer = AGENT_FILLS if to is None else ()
    return {"op": "rollback", "step": step, "to": to, "service": service(spec, to, defer=defer),
            "checks": checks(spec, version=to, defer=defer)}


def hop_timeout(spec: Playbook) -> float:
    """Upper bound for one hop program: stop + migrate + start + every check's retries."""
    migrate = max([m.timeout for m in [spec.migrate, *(h.migrate for h in spec.via)] if m] or [0.0])
    return spec.service.stop_timeout + spec.service.start_timeout + migrate + checks_budget(spec) + 30


def checks_budget(spec: Playbook) -> float:
    return sum((c.timeout + c.interval) * (c.retries + 1) for c in spec.checks)
