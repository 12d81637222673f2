"""What a step does, undoes and checks, in words, rendered from its operations (pure).

The plan holds operations, not prose: this is the one place that turns them into the text a
reviewer reads (planning/render.py), so the text cannot say one thing while the step does another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from upgrader.models.plan import Step

Op = dict[str, Any]


def describe(step: Step, root: str) -> tuple[str, str, str]:
    """(does, undo, verify) for ``step`` of a component installed under ``root``."""
    return (does(step.op, root), does(step.undo, root) if step.undo else "",
            does(step.verify, root) if step.verify else _self_check(step.op))


def does(op: Op, root: str) -> str:
    render = _RENDER.get(str(op.get("op", "")))
    return str(render(op, root)) if render else f"agent operation {op.get('op')!r}"


def _service(svc: Op | None) -> str:
    if not svc:
        return "the service"
    return str(svc.get("systemd") or " ".join(svc.get("start") or []) or "the service")


def _stop_service(svc: Op | None) -> str:
    if svc and not svc.get("systemd") and svc.get("stop"):
        return " ".join(svc["stop"])
    return f"stop {_service(svc)}"


def _start_service(svc: Op | None) -> str:
    if svc and not svc.get("systemd") and svc.get("start"):
        return " ".join(svc["start"])
    return f"start {_service(svc)}"


def _names(checks: list[Op]) -> str:
    return ", ".join(str(c.get("name")) for c in checks) or "no checks"


def _stage(op: Op, root: str) -> str:
    return (f"upload artifact, check sha256 {str(op.get('sha256'))[:12]}…, unpack into "
            f"{root}/releases/{op.get('version')}")


def _unstage(op: Op, root: str) -> str:
    return f"remove {root}/releases/{op.get('version')} if this run staged it"


def _precheck(op: Op, root: str) -> str:
    text = f"free disk ≥ {op.get('min_free_disk_mb')} MB"
    if op.get("healthy_before"):
        text += f"; {_names(op.get('checks', []))} pass on the current release"
    return text + "".join(f"; {c.get('name')}" for c in op.get("commands", []))


def _migrate(op: Op, root: str) -> str:
    files = ", ".join(op.get("files", [])) or "config files"
    return f"back up {files}; run {' '.join(op.get('argv', []))}"


def _rollback(op: Op, root: str) -> str:
    return (f"roll back to {op.get('to') or 'the previous release'}: stop, restore the config from the "
            f"migration backups, point {root}/current at releases/{op.get('to')}, {_start_service(op.get('service'))}, "
            f"{_names(op.get('checks', []))}")


_RENDER: dict[str, Callable[[Op, str], str]] = {
    "stage": _stage,
    "unstage": _unstage,
    "precheck": _precheck,
    "stop": lambda op, root: _stop_service(op.get("service")),
    "switch": lambda op, root: f"point {root}/current at releases/{op.get('version')} (atomic rename)",
    "carry_over": lambda op, root: (f"copy {', '.join(op.get('files', []))} from releases/{op.get('from')} "
                                    f"into releases/{op.get('version')}"),
    "migrate": _migrate,
    "start": lambda op, root: _start_service(op.get("service")),
    "verify": lambda op, root: f"{_names(op.get('checks', []))} (expecting {op.get('expect_version')})",
    "bake": lambda op, root: (f"re-run {_names(op.get('checks', []))} every {op.get('interval'):g}s "
                              f"for {op.get('duration'):g}s"),
    "rollback": _rollback,
    "testinfra": lambda op, root: (f"from the controller, run the testinfra module {op.get('file')} against "
                                   f"the host (expecting {op.get('version')}, at most {op.get('timeout'):g}s)"),
}


def _self_check(op: Op) -> str:
    """How an operation without a separate verify confirms itself (the agent's own check)."""
    return {
        "stage": "the agent checks the artifact's sha256 and writes the release's stage marker",
        "stop": "the agent waits until the service has stopped (killing a systemd unit that hangs)",
        "switch": "one rename: current points at the old or the new release, never at nothing",
        "migrate": "the command's exit status; on failure the agent restores the config",
    }.get(str(op.get("op")), "")
