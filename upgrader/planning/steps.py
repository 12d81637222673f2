"""The ordered steps for one host, each with its undo and its verify (pure, data only)."""

from __future__ import annotations

from upgrader.models.plan import Step
from upgrader.models.playbook import Playbook
from upgrader.models.types import trusted
from upgrader.planning.sources import migration_for


def host_steps(playbook: Playbook, host: str, installed: str, path: list[str], canary: bool) -> list[Step]:
    """The steps for ``host``; ids are ``<host>/<nn>-<action>[-<version>]``."""
    return for_host(step_templates(playbook, installed, tuple(path), canary), host)


def for_host(templates: list[Step], host: str) -> list[Step]:
    """Templates from ``step_templates`` with the host's name put in front of each id."""
    # ``trusted``: the fields come from validated templates; a plan holds one copy per host and step.
    return [
        trusted(
            Step, id=f"{host}/{t.id}", action=t.action, version=t.version, detail=t.detail, undo=t.undo, verify=t.verify
        )
        for t in templates
    ]


def step_templates(playbook: Playbook, installed: str, path: tuple[str, ...], canary: bool) -> list[Step]:
    """The steps of every host with the same installed version, path and canary role; ids without the host.

    Hosts share them, so the planner builds them once per distinct (installed, path, canary).
    """
    root = playbook.install.root
    steps: list[Step] = []

    def add(action: str, version: str | None, detail: str, undo: str | None, verify: str | None) -> None:
        step_id = f"{len(steps) + 1:02d}-{action}" + (f"-{version}" if version else "")
        steps.append(Step(id=step_id, action=action, version=version, detail=detail, undo=undo, verify=verify))

    for version in path:
        add("stage", version, f"upload artifact, check sha256, unpack into {root}/releases/{version}",
            f"remove {root}/releases/{version} if this run created it",
            "sha256 of the uploaded artifact and the release's stage marker")
    checks = ", ".join(c.name for c in playbook.checks)
    add("precheck", None,
        f"free disk ≥ {playbook.prechecks.min_free_disk_mb} MB"
        + (f"; {checks} pass on {installed}" if playbook.prechecks.healthy_before else "")
        + "".join(f"; {c.name}" for c in playbook.prechecks.commands),
        None, None)
    service = playbook.service.systemd or "service"
    previous = installed
    for version in path:
        add("stop", version, f"stop {service}", f"start {service}", f"{service} is not running")
        add("switch", version, f"point {root}/current at releases/{version} (atomic rename)",
            f"point {root}/current back at releases/{installed}", f"readlink {root}/current")
        migration = migration_for(playbook, version)
        if migration is not None:
            files = ", ".join(playbook.install.config_files) or "config files"
            add("migrate", version, f"back up {files}; run {' '.join(migration.command)}",
                f"restore {files} from the backup", "command exit status")
        add("start", version, f"start {service}", f"stop {service}", f"{service} is active")
        add("verify", version, f"{checks} (expecting {version})", None, None)
        previous = version
    if canary:
        add("bake", previous, f"re-run {checks} every {playbook.canary.bake_interval:g}s "
            f"for {playbook.canary.bake:g}s", None, None)
    return steps
