"""What a step does, undoes and checks, in words, rendered from its operations (pure).

The plan holds operations, not prose: this is the one place that turns them into the text a
reviewer reads (planning/render.py), so the text cannot say one thing while the step does another.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from upgrader.models.plan import Plan, Step

Op = dict[str, Any]


def describe(step: Step, root: str) -> tuple[str, str, str]:
    """(does, undo, verify) for ``step`` of a component installed under ``root``."""
    return (
        does(step.op, root),
        does(step.undo, root) if step.undo else "",
        does(step.verify, root) if step.verify else _self_check(step.op),
    )


def does(op: Op, root: str) -> str:
    render = _RENDER.get(str(op.get("op", "")))
    return str(render(op, root)) if render else f"agent operation {op.get('op')!r}"


def _service(svc: Op | None) -> str:
    if not svc:
        return "the service"
    return str(svc.get("systemd") or " ".join(svc.get("start") or []) or "the service")


def _stop_service(svc: Op | None) -> str:
    if svc and not svc.get("systemd") and svc.get("stop"):
        return argv_text(svc["stop"])
    return f"stop {_service(svc)}"


def _start_service(svc: Op | None) -> str:
    if svc and not svc.get("systemd") and svc.get("start"):
        return argv_text(svc["start"])
    return f"start {_service(svc)}"


def argv_text(argv: list[str] | tuple[str, ...]) -> str:
    """An argv as one unambiguous line: each argument shell-quoted (the agent runs it without a shell)."""
    return shlex.join(str(a) for a in argv)


def _names(checks: list[Op]) -> str:
    return ", ".join(str(c.get("name")) for c in checks) or "no checks"


def _stage(op: Op, root: str) -> str:
    return (
        f"upload artifact, check sha256 {str(op.get('sha256'))[:12]}…, unpack into {root}/releases/{op.get('version')}"
    )


def _unstage(op: Op, root: str) -> str:
    return f"remove {root}/releases/{op.get('version')} if this run staged it"


def _precheck(op: Op, root: str) -> str:
    text = f"free disk ≥ {op.get('min_free_disk_mb')} MB"
    if op.get("healthy_before"):
        text += f"; {_names(op.get('checks', []))} pass on the current release"
    return text + "".join(f"; {c.get('name')}" for c in op.get("commands", []))


def _migrate(op: Op, root: str) -> str:
    files = ", ".join(op.get("files", [])) or "config files"
    return f"back up {files}; run {argv_text(op.get('argv', []))}"


def _rollback(op: Op, root: str) -> str:
    return (
        f"roll back to {op.get('to') or 'the previous release'}: stop, restore the config from the "
        f"migration backups, point {root}/current at releases/{op.get('to')}, {_start_service(op.get('service'))}, "
        f"{_names(op.get('checks', []))}"
    )


_RENDER: dict[str, Callable[[Op, str], str]] = {
    "stage": _stage,
    "unstage": _unstage,
    "precheck": _precheck,
    "stop": lambda op, root: _stop_service(op.get("service")),
    "switch": lambda op, root: f"point {root}/current at releases/{op.get('version')} (atomic rename)",
    "carry_over": lambda op, root: (
        f"copy {', '.join(op.get('files', []))} from releases/{op.get('from')} into releases/{op.get('version')}"
    ),
    "migrate": _migrate,
    "start": lambda op, root: _start_service(op.get("service")),
    "verify": lambda op, root: f"{_names(op.get('checks', []))} (expecting {op.get('expect_version')})",
    "bake": lambda op, root: (
        f"re-run {_names(op.get('checks', []))} every {op.get('interval'):g}s for {op.get('duration'):g}s"
    ),
    "rollback": _rollback,
    "testinfra": lambda op, root: (
        f"from the controller, run the testinfra module {op.get('file')} against "
        f"the host (expecting {op.get('version')}, at most {op.get('timeout'):g}s)"
    ),
}


def _self_check(op: Op) -> str:
    """How an operation without a separate verify confirms itself (the agent's own check)."""
    return {
        "stage": "the agent checks the artifact's sha256 and writes the release's stage marker",
        "stop": "the agent waits until the service has stopped (killing a systemd unit that hangs)",
        "switch": "one rename: current points at the old or the new release, never at nothing",
        "migrate": "the command's exit status; on failure the agent restores the config",
    }.get(str(op.get("op")), "")


@dataclass(frozen=True)
class Command:
    """Something the plan runs: a host command (argv), a host probe, or a controller-side module.

    ``what`` names it (``check health (command)``, ``service start``, ``migrate to 5.2.0``);
    ``run`` is what exactly runs (an argv as ``argv_text`` writes it, a probe's target);
    ``steps`` the agent operations that run it (``rollback``: the undo of a live step).
    """

    what: str
    run: str
    steps: tuple[str, ...]


def commands(plan: Plan) -> list[Command]:
    """Every command, probe and module the plan's steps run, once each, in the order steps first use them.

    Read from the operations the engine sends (not from the playbook), so what a reviewer reads is
    what runs; a change to any of them changes this list (planning/diff.py compares it).
    """
    found: dict[tuple[str, str], list[str]] = {}
    seen: set[int] = set()  # hosts share their operation objects: each is walked once
    for host in plan.hosts:
        for step in host.steps:
            for op in (step.op, step.undo, step.verify):  # an undo is a rollback, a verify a verify: by name
                if op is None or id(op) in seen:
                    continue
                seen.add(id(op))
                for what, run in _runs(op):
                    where = found.setdefault((what, run), [])
                    if op.get("op") not in where:
                        where.append(str(op.get("op")))
    return [Command(what, run, tuple(steps)) for (what, run), steps in found.items()]


def _runs(op: Op) -> Iterator[tuple[str, str]]:
    """(what, run) for everything ``op`` makes a host (or, for testinfra, the controller) run."""
    kind = op.get("op")
    svc = op.get("service")
    if isinstance(svc, dict):
        yield from _service_runs(svc, str(kind))
    for key in ("checks", "commands"):
        for check in op.get(key) or []:
            yield from _check_runs(check)
    if kind == "migrate":
        yield f"migrate to {op.get('version')}", argv_text(op.get("argv") or [])
    if kind == "testinfra":
        yield (
            f"check {op.get('name')} (testinfra, on the controller)",
            f"pytest {op.get('file')} (pinned by sha256 in the plan's files)",
        )


# What the agent runs for a systemd unit besides start/stop/is-active (agent.service_stop, service_start,
# unit_cgroup): shown too, since every argv that runs on a host is in the plan (issue 25 §1).
_SYSTEMD_ONLY = {
    "kill": ("service stop, if the unit has not stopped within stop_timeout", ["kill", "--signal=SIGKILL"]),
    "reset-failed": ("service start, if the start failed (then started once more)", ["reset-failed"]),
    "cgroup": ("service control group, for checks of its processes and ports", ["show", "-p", "ControlGroup"]),
}


def _service_runs(svc: Op, kind: str) -> Iterator[tuple[str, str]]:
    unit = svc.get("systemd")
    verbs = {
        "stop": ("stop", "kill"),
        "start": ("start", "reset-failed", "status"),
        "rollback": ("stop", "kill", "start", "reset-failed", "status", "cgroup"),
        "verify": ("status", "cgroup"),
        "bake": ("status", "cgroup"),
    }.get(kind, ())
    for verb in verbs:
        if verb in _SYSTEMD_ONLY:
            if unit:
                what, words = _SYSTEMD_ONLY[verb]
                yield what, argv_text(["systemctl", *words, str(unit)])
            continue
        systemctl = ["systemctl", "is-active" if verb == "status" else verb, str(unit)]
        argv = systemctl if unit else svc.get(verb) or []
        if argv:
            yield f"service {verb}", argv_text(argv)


def _check_runs(check: Op) -> Iterator[tuple[str, str]]:
    kind = str(check.get("kind"))
    body = check.get(kind) or {}
    what = f"check {check.get('name')} ({kind})"
    if kind == "command":
        expect = f"  # expects exit {body.get('exit_code', 0)}" + (
            f", output matching {body['stdout']!r}" if body.get("stdout") else ""
        )
        yield what, argv_text(body.get("argv") or []) + expect
    elif kind == "version" and body.get("argv"):
        yield (
            what,
            argv_text(body["argv"])
            + "  # reports the version"
            + (f" matching {body['pattern']!r}" if body.get("pattern") else ""),
        )
    elif kind == "version":
        yield what, f"GET {body.get('url')}  # reports the version in {body.get('field', 'version')!r}"
    elif kind == "http":
        yield (
            what,
            f"GET {body.get('url')}  # expects {body.get('status', 200)}"
            + (f", body matching {body['body']!r}" if body.get("body") else ""),
        )
    elif kind == "tcp":
        yield what, f"connect {body.get('host', '127.0.0.1')}:{body.get('port')}"
    elif kind == "process":
        scope = "".join(
            [
                f" in {body['unit']}'s control group" if body.get("unit") else "",
                f" running as {body['user']}" if body.get("user") else "",
            ]
        )
        yield what, f"a process{scope} whose command line matches {body.get('match')!r}"
        if body.get("unit"):
            yield (_SYSTEMD_ONLY["cgroup"][0], argv_text(["systemctl", *_SYSTEMD_ONLY["cgroup"][1], str(body["unit"])]))
    elif kind == "log":
        yield what, f"{body.get('path')}: a new line matching {body.get('pattern')!r}"
    else:
        yield what, f"agent check {kind!r}"
