"""The ordered steps for one host, each with the operation it runs, its undo and its verify (pure, data only)."""

from __future__ import annotations

from typing import Any

from upgrader.models.plan import Step
from upgrader.models.playbook import Playbook
from upgrader.models.types import trusted
from upgrader.planning import operations

# Steps that change what is live on a host: each is undone by rolling the host back to where it began.
LIVE = frozenset({"stop", "switch", "carry_over", "migrate", "start"})


def for_host(templates: list[Step], host: str) -> list[Step]:
    """Templates from ``step_templates`` with the host's name put in front of each id.

    The operations are shared with the templates (steps are frozen, and nothing changes an operation).
    """
    # ``trusted``: the fields come from validated templates; a plan holds one copy per host and step.
    return [
        trusted(Step, id=f"{host}/{t.id}", action=t.action, version=t.version, op=t.op, undo=t.undo, verify=t.verify)
        for t in templates
    ]


def host_undo(templates: list[Step]) -> dict[str, Any] | None:
    """The undo of a host's live steps (one object, shared by them): its HostPlan.undo, written once in the file."""
    return next((t.undo for t in templates if t.action in LIVE), None)


def step_templates(playbook: Playbook, installed: str, path: tuple[str, ...], canary: bool) -> list[Step]:
    """The steps of every host with the same installed version, path and canary role; ids without the host.

    Hosts share them, so the planner builds them once per distinct (installed, path, canary).
    Ids are ``<nn>-<action>[-<version>]``.
    """
    steps: list[Step] = []

    def add(
        action: str,
        version: str | None,
        op: dict[str, Any],
        undo: dict[str, Any] | None = None,
        verify: dict[str, Any] | None = None,
    ) -> None:
        step_id = f"{len(steps) + 1:02d}-{action}" + (f"-{version}" if version else "")
        steps.append(trusted(Step, id=step_id, action=action, version=version, op=op, undo=undo, verify=verify))

    for version in path:
        add("stage", version, operations.stage_op(playbook, version), operations.unstage_op(version))
    add("precheck", None, operations.precheck_op(playbook, installed))
    back = operations.rollback_op(playbook, installed)  # one object: the undo of every live step
    previous = installed
    for version in path:
        hop = operations.hop_ops(playbook, previous, version)
        verify = hop[-1][1]  # the hop's verify step confirms its start
        for action, op in hop:
            add(action, version, op, back if action in LIVE else None, verify if action == "start" else None)
        for op in operations.testinfra_ops(playbook, version):
            add("testinfra", version, op)
        previous = version
    if canary:
        add("bake", previous, operations.bake_op(playbook, previous))
    return steps
