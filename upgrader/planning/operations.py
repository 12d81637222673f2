"""The agent operations of plan steps, built from the playbook (pure; no I/O).

The planner puts each step's operation into the plan (planning/steps.py), and the engine sends
exactly those (engine/apply.py): what is reviewed is what runs.  An operation is a JSON object:
``op`` (the agent's operation name) and its arguments; the engine adds only ``step`` (the plan's
step id) and, for staging, where it uploaded the artifact.

Placeholders in playbook commands are substituted here, per argument: the result is still an
argv list, so a hostile value can never become shell.  A placeholder never silently becomes an
empty string: ``substitute`` raises when one has no value, and validation (models/playbook.py)
refuses the fields where one could have none.  ``{release}`` and ``{version}`` name the release
an operation runs for: the new one in a hop, the running one in its stop, the current one in
prechecks and facts, the target in a rollback.  Where the controller cannot know it before the
host answers (facts; an emergency rollback to the recorded previous release), they are left for
the agent, which fills them in with the release it found (agent.with_release).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from upgrader.models.playbook import CONTROLLER_CHECKS, Check, Playbook, Service
from upgrader.planning.sources import artifact_for, migration_for

Op = dict[str, Any]

# Left in place for the agent: it knows the current release, or the rollback target, once it looks.
AGENT_FILLS = ("release", "version")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class PlaceholderError(ValueError):
    """A command names a placeholder that has no value where it runs (validation should have refused it)."""


def release_dir(spec: Playbook, version: str) -> str:
    return f"{spec.install.root}/releases/{version}"


def placeholders(spec: Playbook, version: str | None = None, previous: str | None = None) -> dict[str, str]:
    """The placeholders' values for an operation that runs for ``version``, coming from ``previous``.

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


def checks(
    spec: Playbook, items: list[Check] | None = None, version: str | None = None, *, defer: Collection[str] = ()
) -> list[dict[str, Any]]:
    values = placeholders(spec, version)
    out = []
    for c in spec.checks if items is None else items:
        if c.kind in CONTROLLER_CHECKS:
            continue  # the engine runs these itself (testinfra_op)
        body = c.model_dump(mode="json", exclude_none=True)
        kind = c.kind
        if kind == "command":
            body["command"]["argv"] = substitute(c.command.argv, values, defer=defer)  # type: ignore[union-attr]
        if kind == "version" and c.version and c.version.argv:
            body["version"]["argv"] = substitute(c.version.argv, values, defer=defer)
        if kind == "process" and spec.service.systemd:  # only the unit's processes count (agent process_scope)
            body["process"]["unit"] = spec.service.systemd
        body["kind"] = kind
        out.append(body)
    return out


def log_paths(spec: Playbook) -> list[str]:
    return [c.log.path for c in spec.checks if c.log is not None]


def stage_op(spec: Playbook, version: str) -> Op:
    """Unpack the release's artifact (the engine adds where it uploaded it); the agent checks its sha256."""
    art = artifact_for(spec, version)
    return {"op": "stage", "version": version, "sha256": art.sha256, "strip_components": art.strip_components}


def unstage_op(version: str) -> Op:
    """Undo of a stage: remove the release, only if this run staged it and it is not live."""
    return {"op": "unstage", "version": version, "continue_on_error": True}


def precheck_op(spec: Playbook, current: str) -> Op:
    """Prechecks on the release that is ``current`` (the plan's from_version, confirmed under the lock)."""
    return {
        "op": "precheck",
        "min_free_disk_mb": spec.prechecks.min_free_disk_mb,
        "healthy_before": spec.prechecks.healthy_before,
        "checks": checks(spec, version=current),
        "commands": checks(spec, spec.prechecks.commands, version=current),
    }


def hop_ops(spec: Playbook, previous: str, version: str) -> list[tuple[str, Op]]:
    """(action, operation) for one release on one host: stop → switch → carry over → migrate → start → verify."""
    svc = service(spec, version)
    ops: list[tuple[str, Op]] = [
        ("stop", {"op": "stop", "service": service(spec, previous)}),  # the release that is running
        ("switch", {"op": "switch", "version": version}),
    ]
    if spec.install.carry_over:
        ops.append(
            (
                "carry_over",
                {"op": "carry_over", "version": version, "from": previous, "files": list(spec.install.carry_over)},
            )
        )
    migration = migration_for(spec, version)
    if migration is not None:
        ops.append(
            (
                "migrate",
                {
                    "op": "migrate",
                    "version": version,
                    "from": previous,
                    "files": list(spec.install.config_files),
                    "argv": substitute(migration.command, placeholders(spec, version, previous)),
                    "timeout": migration.timeout,
                },
            )
        )
    ops += [
        ("start", {"op": "start", "service": svc, "logs": log_paths(spec)}),
        ("verify", verify_op(spec, version, svc)),
    ]
    return ops


def verify_op(spec: Playbook, version: str, svc: dict[str, Any] | None = None) -> Op:
    return {
        "op": "verify",
        "service": svc or service(spec, version),
        "checks": checks(spec, version=version),
        "expect_version": version,
    }


def testinfra_ops(spec: Playbook, version: str) -> list[Op]:
    """The playbook's testinfra checks, run by the engine from the controller against the host on ``version``.

    ``file`` stays as the playbook wrote it (relative to the playbook's directory): plans are pure.
    """
    return [
        {
            "op": "testinfra",
            "name": c.name,
            "file": c.testinfra.file,
            "timeout": c.testinfra.timeout,
            "version": version,
        }
        for c in spec.checks
        if c.testinfra is not None
    ]


def bake_op(spec: Playbook, version: str) -> Op:
    return {
        "op": "bake",
        "service": service(spec, version),
        "checks": checks(spec, version=version),
        "expect_version": version,
        "duration": spec.canary.bake,
        "interval": spec.canary.bake_interval,
    }


def rollback_op(spec: Playbook, to: str | None) -> Op:
    """Back to ``to``; without one, to the host's recorded previous release, which the agent fills in."""
    defer = AGENT_FILLS if to is None else ()
    return {
        "op": "rollback",
        "to": to,
        "service": service(spec, to, defer=defer),
        "checks": checks(spec, version=to, defer=defer),
    }
