"""Agent programs for plan steps, built from the playbook spec (pure; no I/O).

Placeholders in playbook commands are substituted here, per argument: the
result is still an argv list, so a hostile value can never become shell.
"""

from __future__ import annotations

from typing import Any

from upgrader.models.playbook import Check, Playbook, Service
from upgrader.planning.sources import migration_for


def release_dir(spec: Playbook, version: str) -> str:
    return f"{spec.install.root}/releases/{version}"


def substitute(argv: list[str], spec: Playbook, version: str | None = None, previous: str | None = None) -> list[str]:
    values = {
        "release": release_dir(spec, version) if version else "",
        "previous": release_dir(spec, previous) if previous else "",
        "version": version or "",
        "from_version": previous or "",
        "root": spec.install.root,
        "component": spec.component,
    }
    out = []
    for arg in argv:
        for name, value in values.items():
            arg = arg.replace("{" + name + "}", value)
        out.append(arg)
    return out


def service(spec: Playbook, version: str | None = None) -> dict[str, Any]:
    s: Service = spec.service
    data: dict[str, Any] = {"start_timeout": s.start_timeout, "stop_timeout": s.stop_timeout}
    if s.systemd:
        data["systemd"] = s.systemd
    else:
        data.update({k: substitute(getattr(s, k), spec, version) for k in ("start", "stop", "status")})
    return data


def checks(spec: Playbook, items: list[Check] | None = None, version: str | None = None) -> list[dict[str, Any]]:
    out = []
    for c in spec.checks if items is None else items:
        body = c.model_dump(mode="json", exclude_none=True)
        kind = c.kind
        if kind == "command":
            body["command"]["argv"] = substitute(c.command.argv, spec, version)  # type: ignore[union-attr]
        if kind == "version" and c.version and c.version.argv:
            body["version"]["argv"] = substitute(c.version.argv, spec, version)
        body["kind"] = kind
        out.append(body)
    return out


def log_paths(spec: Playbook) -> list[str]:
    return [c.log.path for c in spec.checks if c.log is not None]


def version_check(spec: Playbook) -> dict[str, Any] | None:
    c = next((c for c in spec.checks if c.version is not None), None)
    return c.version.model_dump(mode="json", exclude_none=True) if c and c.version else None


def facts_op(spec: Playbook, journal_lines: int = 0) -> dict[str, Any]:
    return {"op": "facts", "service": service(spec), "version_check": version_check(spec),
            "journal_lines": journal_lines}


def lock_op(mode: str, *, operator: str, plan: str | None, kind: str = "apply", reason: str | None = None,
            controller: str | None = None) -> dict[str, Any]:
    return {"op": "lock", "mode": mode, "operator": operator, "plan": plan, "kind": kind, "reason": reason,
            "controller": controller, "step": f"lock-{mode}"}


def precheck_op(spec: Playbook, step: str) -> dict[str, Any]:
    return {"op": "precheck", "step": step, "min_free_disk_mb": spec.prechecks.min_free_disk_mb,
            "healthy_before": spec.prechecks.healthy_before, "checks": checks(spec),
            "commands": checks(spec, spec.prechecks.commands)}


def hop_ops(spec: Playbook, host: str, previous: str, version: str, step_ids: dict[str, str]) -> list[dict[str, Any]]:
    """stop → switch → carry over → migrate → start → verify for one release on one host."""
    svc = service(spec, version)
    ops: list[dict[str, Any]] = [
        {"op": "stop", "step": step_ids.get("stop"), "service": svc},
        {"op": "switch", "step": step_ids.get("switch"), "version": version},
    ]
    if spec.install.carry_over:
        ops.append({"op": "carry_over", "step": step_ids.get("switch"), "version": version, "from": previous,
                    "files": list(spec.install.carry_over)})
    migration = migration_for(spec, version)
    if migration is not None:
        ops.append({"op": "migrate", "step": step_ids.get("migrate"), "version": version, "from": previous,
                    "files": list(spec.install.config_files),
                    "argv": substitute(migration.command, spec, version, previous), "timeout": migration.timeout})
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
    return {"op": "rollback", "step": step, "to": to, "service": service(spec, to), "checks": checks(spec, version=to)}


def hop_timeout(spec: Playbook) -> float:
    """Upper bound for one hop program: stop + migrate + start + every check's retries."""
    migrate = max([m.timeout for m in [spec.migrate, *(h.migrate for h in spec.via)] if m] or [0.0])
    return spec.service.stop_timeout + spec.service.start_timeout + migrate + checks_budget(spec) + 30


def checks_budget(spec: Playbook) -> float:
    return sum((c.timeout + c.interval) * (c.retries + 1) for c in spec.checks)
