"""Operations that look and lock: facts, lock, precheck."""

from __future__ import annotations

import os
import time

from .checks import failure, reported_version, run_checks
from .errors import OpFailed
from .fs import free_mb, fsync_dir, read_json, token, write_json_atomic
from .records import recorded_definition, staged_entry, verified_record
from .releases import current_version, installed_by, release_meta, run_start, staged_versions, with_release
from .service import service_state
from .state import STATE, journal_tail, lock_path, now, recorded_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .shapes import Ctx, Record, Spec


def op_facts(ctx: Ctx, s: Spec) -> Record:
    root = ctx["root"]
    if not root:  # the controller has no layout: the host's own record says where the component lives
        return {
            "installed": None,
            "staged": [],
            "staged_sha": {},
            "previous": None,
            "no_record": True,
            # installed or staged by upgrader, root not recorded (an older agent's); a journal or a lock
            # alone (a rollback that found nothing to do, an unlock) is no sign of an install
            "records": any(
                os.path.exists(os.path.join(STATE, ctx["component"], name))
                for name in ("staged.json", "definitions.json", "verified.json")
            ),
            "lock": read_json(os.path.join(STATE, ctx["component"], "lock.json")),
            "clock": time.time(),
            "journal_tail": journal_tail(ctx["component"], s.get("journal_lines", 0)),
        }
    installed = current_version(root)
    out = {
        "root": root,
        "clock": time.time(),  # this host's clock: a rollback undoes what is switched here after it looked
        "installed_by": installed_by(root, installed) if installed else None,
        "run_start": run_start(root, installed) if installed else None,
        "verified": verified_record(root, ctx["component"], installed),
        "installed": installed,
        "staged": staged_versions(root),  # every release on disk; staged_sha: those this agent staged, and from what
        "staged_sha": {v: (staged_entry(root, ctx["component"], v) or {}).get("sha256") for v in staged_versions(root)},
        "previous": release_meta(root, installed, "previous.json", {}).get("version") if installed else None,
        "lock": read_json(os.path.join(STATE, ctx["component"], "lock.json")),
        "free_disk_mb": free_mb(root),
        "journal_tail": journal_tail(ctx["component"], s.get("journal_lines", 0)),
    }
    try:  # the controller left {release} and {version} for the current release
        svc, version_check = (
            with_release(s.get("service"), root, installed),
            with_release(s.get("version_check"), root, installed),
        )
    except OpFailed:  # nothing installed: no release to name, so no command of one to ask
        svc = version_check = None
    out["service"] = service_state(svc) if svc else None
    also = s.get("also")
    if isinstance(also, list):  # [[component, root]]: other components' current releases (their `requires`)
        out["also"] = dict(
            (c, current_version(r or recorded_root(c) or "/nonexistent"))
            for c, r in (e for e in also if isinstance(e, list) and len(e) == 2)
            if isinstance(c, str) and isinstance(r, str)
        )
    if version_check and out["service"] == "active":
        try:
            out["reported_version"] = reported_version(version_check, 3)
        except (OSError, ValueError, OpFailed) as exc:
            out["reported_version"] = None
            out["report_error"] = str(exc)
    return out


def op_lock(ctx: Ctx, s: Spec) -> Record:
    path = lock_path(ctx)
    mode = s["mode"]
    mine = {
        "run": ctx["run"],
        "operator": s.get("operator"),
        "plan": s.get("plan"),
        "since": now(),
        "kind": s.get("kind", "apply"),
        "pid_host": s.get("controller"),
    }
    held = read_json(path)
    if mode == "acquire":
        if held and held.get("run") != ctx["run"]:
            raise OpFailed(
                "locked by run {} ({}, since {})".format(held.get("run"), held.get("operator"), held.get("since")),
                holder=held,
            )
        if held:
            return {"lock": held, "reacquired": True}
        tmp = f"{path}.new-{token()}"
        write_json_atomic(tmp, mine)
        try:
            os.link(tmp, path)  # atomic create-if-absent: two operators cannot both win
        except FileExistsError:
            held = read_json(path) or {}
            raise OpFailed(
                "locked by run {} ({}, since {})".format(held.get("run"), held.get("operator"), held.get("since")),
                holder=held,
            ) from None
        finally:
            os.unlink(tmp)
        fsync_dir(os.path.dirname(path))
        return {"lock": mine}
    if mode == "check":
        if not held or held.get("run") != ctx["run"]:
            raise OpFailed(
                "this run no longer holds the lock: %s"
                % (
                    "taken over by {} run {} ({})".format(held.get("kind"), held.get("run"), held.get("operator"))
                    if held
                    else "lock is gone"
                ),
                holder=held,
                handed_over=bool(held),
            )
        return {"lock": held}
    if mode in ("handover", "break"):
        mine["previous_holder"] = held
        mine["reason"] = s.get("reason")
        write_json_atomic(path, mine)
        return {"lock": mine, "previous_holder": held, "takeover": ctx.get("takeover")}
    if mode == "unlock":  # `upgrader unlock`: an operator frees the host lock, whoever holds it
        if held:
            os.unlink(path)
            fsync_dir(os.path.dirname(path))
        return {"released": bool(held), "holder": held}
    if mode == "release":
        if held and held.get("run") == ctx["run"]:
            os.unlink(path)
            fsync_dir(os.path.dirname(path))
            return {"released": True}
        return {"released": False, "holder": held}
    raise OpFailed(f"unknown lock mode {mode!r}")


def op_precheck(ctx: Ctx, s: Spec) -> Record:
    need = s.get("min_free_disk_mb", 0)
    free = free_mb(ctx["root"])
    if free < need:
        raise OpFailed("only {} MB free under {}, need {} MB".format(free, ctx["root"], need), free_disk_mb=free)
    results: list[Record] = []
    source = None
    if s.get("healthy_before"):
        current = current_version(ctx["root"])
        ctx["expect_version"] = current
        # The running release is checked with what it was verified with when installed, if this host
        # recorded that: the new release's checks may not fit it (riskgw 2.5's `config_schema: 2`
        # failed every healthy 2.4.0).  Without a record, the checks sent (the playbook's).
        recorded = recorded_definition(ctx["root"], ctx["component"], current) if current else None
        checks, source = s.get("checks", []), "sent"
        if recorded:
            checks, source = with_release(recorded["checks"], ctx["root"], current), "recorded"
        ok, results = run_checks(checks, ctx)
        if not ok:
            raise OpFailed(
                f"component is not healthy before the upgrade ({source} checks of {current}): {failure(results)}",
                checks=results,
                source=source,
                unhealthy=True,  # the release it runs fails its checks: on no verified release, untouched
            )
    ok, more = run_checks(s.get("commands", []), ctx)
    if not ok:
        raise OpFailed(f"pre-check failed: {failure(more)}", checks=more)
    return {"free_disk_mb": free, "checks": results + more, "healthy_source": source}
