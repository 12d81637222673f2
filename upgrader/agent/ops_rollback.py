"""The rollback operation and how it chooses what to verify the release it goes back to with."""

from __future__ import annotations

import os

from .checks import failure, run_checks
from .config import migration_record, restore_config
from .errors import OpFailed
from .ops_install import remember_log_offsets
from .records import forget_verified, record_verified, recorded_definition
from .releases import (
    current_version,
    default_target,
    flip,
    install_dirs,
    release_path,
    rollback_chain,
    staged_versions,
    with_release,
)
from .service import service_start, service_state, service_stop
from .state import append_journal, forget_stopped, now, recorded_stopped

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .shapes import Ctx, Record, Spec


def op_rollback(ctx: Ctx, s: Spec) -> Record:
    """Back to ``to`` (default: the release before the run that installed the current one): stop, restore
    configs, flip, start, verify.  A host with nothing to undo says so and changes nothing."""
    root = ctx["root"]
    if not root:
        return {
            "nothing": True,
            "reason": "upgrader has no record of where {} is installed here".format(ctx["component"]),
            "from": None,
            "to": None,
            "steps": [],
        }
    current = current_version(root)
    target = s.get("to")
    if not target:
        target, why = default_target(root, current, s.get("undo"))
        if target is None:
            if not current or not stopped_here(ctx, s, current):
                return {"nothing": True, "reason": why, "from": current, "to": current, "steps": []}
            target = current  # nothing to undo, but its service is down (an apply taken over after its
            # stop): the current release is started and verified, never left stopped
    install_dirs(root)
    if not os.path.isdir(release_path(root, target)):
        raise OpFailed(
            f"release {target} is not staged on this host",
            missing=target,
            staged=staged_versions(root),
            current=current,
            refused=True,
        )
    service, checks, used = rollback_definition(ctx, s, target, current)
    svc = with_release(service, root, target)  # {release}: the release rolled back to
    checks = with_release(checks, root, target)
    used["checks"] = [c.get("name") for c in checks]
    append_journal(ctx["component"], dict(used, event="rollback-definition", run=ctx["run"], version=target, at=now()))
    logs = [c["log"]["path"] for c in checks if c["kind"] == "log"]
    steps = []
    if current != target:
        chain = rollback_chain(root, current, target) or ([current] if current else [])
        for version in chain:  # refuse before stopping, not with the service down
            try:
                migration_record(root, version)
            except OpFailed as exc:
                exc.detail["refused"] = True
                raise
        steps.append("stop" if service_stop(svc) == "stopped" else "stop (killed)")
        restored = []
        for version in chain:
            restored += restore_config(root, version)
        steps.append(f"restore-config:{len(restored)}")
        forget_verified(ctx["component"])
        flip(root, target)
        steps.append("switch")
        remember_log_offsets(ctx, logs)
        service_start(svc)
        forget_stopped(ctx["component"])
        steps.append("start")
    elif service_state(svc) != "active":
        remember_log_offsets(ctx, logs)
        try:
            service_start(svc)
        except OpFailed as exc:
            # Nothing was rolled back: the release it runs would not start.  Said as such, not as a
            # failed rollback (the controller reports the host unhealthy, for a human).
            exc.detail.update(unhealthy=True, current=current, to=target, steps=steps, definition=used)
            exc.detail["from"] = current
            raise
        forget_stopped(ctx["component"])
        steps.append("start")
    ctx["expect_version"] = target
    ok, results = run_checks(checks, ctx, service=svc)
    if not ok:
        said = "rolled back to {} but verify failed: {}" if current != target else "{} does not pass its checks: {}"
        raise OpFailed(
            said.format(target, failure(results)),
            checks=results,
            current=current_version(root),
            steps=steps,
            definition=used,
            to=target,
            unhealthy=current == target,  # nothing was switched: the release it runs is unhealthy
            **{"from": current},
        )
    record_verified(ctx, target, "rollback", used["checks"])
    return {"from": current, "to": target, "steps": steps, "checks": results, "definition": used}


def stopped_here(ctx: Ctx, s: Spec, current: str | None) -> bool:
    """True if ``current`` is installed and its service (as the rollback would run it) is not active."""
    if not current:
        return False
    try:
        service = rollback_definition(ctx, s, current, current)[0]
        return service_state(with_release(service, ctx["root"], current)) != "active"
    except OpFailed:
        return False  # no way to know how it runs: nothing is started


def rollback_definition(ctx: Ctx, s: Spec, target: str, current: str | None) -> tuple[Spec, list[Spec], Record]:
    """(service, checks, how chosen) to roll back to ``target`` with: what the host recorded when it last
    verified that release; else what the controller sent for that very version (``definitions``); else
    the sent service with no checks (reported as not applicable): never another release's checks.

    A program without ``definitions`` (an apply's undo) is verified with what it sent, as before."""
    recorded = recorded_definition(ctx["root"], ctx["component"], target) if s.get("recorded") else None
    if recorded:  # what the release was installed and verified with, not a newer playbook's guess
        return (
            recorded["service"],
            recorded["checks"],
            {"source": "recorded", "recorded_run": recorded.get("run"), "recorded_at": recorded.get("at")},
        )
    if "definitions" not in s:
        return s["service"], s.get("checks", []), {"source": "sent"}
    sent = (s.get("definitions") or {}).get(target)
    if isinstance(sent, dict) and isinstance(sent.get("service"), dict):
        return sent["service"], sent.get("checks") or [], {"source": "sent", "playbook": sent.get("playbook")}
    service = s.get("service")
    if not isinstance(service, dict):  # no playbook at all: the service another release here was verified with
        for version in [current, *staged_versions(ctx["root"])]:
            other = recorded_definition(ctx["root"], ctx["component"], version) if version else None
            if other:
                service = other["service"]
                break
    if not isinstance(service, dict):  # or the one a program taken over mid-upgrade stopped (state.STOPPED)
        service = recorded_stopped(ctx["component"])
    if not isinstance(service, dict):
        raise OpFailed(
            "no record of how to run {} {} on this host and no playbook for it: name one with "
            "--playbook or --playbooks".format(ctx["component"], target),
            current=current,
            to=target,
            refused=True,
        )
    return service, [], {"source": "none", "not_applicable": f"no checks recorded for {target} and no playbook of it"}
