"""Operations that install a release: stage, stop, switch, carry_over, migrate, start, verify, bake, prune, unstage."""

from __future__ import annotations

import functools
import os
import time

from .checks import bounded, failure, pause, run_checks
from .config import config_path, restore_config
from .errors import OpFailed
from .fs import (
    NOFOLLOW_DIR,
    copy_file,
    copy_hashing,
    fsync_dir,
    open_dir_path,
    remove_quietly,
    secure_dir,
    token,
    write_json_atomic,
)
from .processes import run, tail
from .records import forget_verified, record_definition, record_staged, record_verified, staged_entry
from .releases import (
    META,
    current_version,
    flip,
    install_dirs,
    meta_dir,
    release_meta,
    release_path,
    releases_dir,
    set_release_meta,
    staged_versions,
)
from .service import service_start, service_state, service_stop
from .state import forget_stopped, now, record_stopped, state_dir
from .unpack import extract_safely, open_parent

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .shapes import Ctx, Parts, Record, Spec


def op_stage(ctx: Ctx, s: Spec) -> Record:
    import shutil

    root, version, want = ctx["root"], s["version"], s["sha256"]
    target = release_path(root, version)
    install_dirs(root)
    entry = staged_entry(root, ctx["component"], version)
    if entry and entry.get("sha256") == want:
        remove_quietly(s.get("upload"))
        return {"skipped": True, "reason": "already staged and verified"}
    if os.path.lexists(target):
        if current_version(root) == version:
            raise OpFailed(
                f"release {version} is live but this agent did not stage it from this artifact; refusing to replace it"
            )
        record_staged(ctx["component"], version, None)
        shutil.rmtree(target)  # a half-staged, planted or different build of this version: stage it again
    incoming = secure_dir(os.path.join(state_dir(ctx["component"]), "incoming"), 0o700)
    private = os.path.join(incoming, f"{token()}.tar.gz")
    try:
        digest = copy_hashing(s["upload"], private)  # hash what we will extract, as root, not the user's file
        remove_quietly(s.get("upload"))
        if digest != want:
            raise OpFailed(f"sha256 mismatch for {version}: artifact has {digest}, playbook says {want}", sha256=digest)
        tmp = os.path.join(releases_dir(root), ".staging-" + token())  # unguessable; prune removes strays
        try:
            extract_safely(private, tmp, s.get("strip_components", 0))
            os.mkdir(os.path.join(tmp, META), 0o700)  # the tarball cannot have made it: extract_safely refuses that
            os.rename(tmp, target)
            fsync_dir(releases_dir(root))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        st = os.lstat(target)
        record_staged(
            ctx["component"],
            version,
            {"sha256": want, "run": ctx["run"], "staged_at": now(), "dev": st.st_dev, "ino": st.st_ino},
        )
    except OSError as exc:
        raise OpFailed(f"cannot unpack {version}: {exc}", errno=exc.errno) from None
    finally:
        remove_quietly(private)
    return {"staged": version}


def op_stop(ctx: Ctx, s: Spec) -> Record:
    record_stopped(ctx["component"], s["service"])  # before: a takeover mid-stop still finds how to start it
    how = service_stop(s["service"])
    return {"service": service_state(s["service"]), "how": how}


def op_switch(ctx: Ctx, s: Spec) -> Record:
    root, version = ctx["root"], s["version"]
    old = current_version(root)
    forget_verified(ctx["component"])  # the release about to be current is not verified yet
    flip(root, version)
    if old and old != version:
        set_release_meta(
            root, version, "previous.json", {"version": old, "run": ctx["run"], "at": now(), "t": time.time()}
        )
    return {"previous": old, "current": version}


def release_relative(rel: object) -> Parts:
    """A carry_over name: a plain relative path inside a release, never into .upgrader/."""
    parts = [p for p in str(rel).split("/") if p not in ("", ".")]
    if str(rel).startswith("/") or not parts or ".." in parts or parts[0].lower() == META or "\0" in str(rel):
        raise OpFailed(f"carry_over file {rel!r} is not a plain path inside the release", file=rel)
    return tuple(parts)


def carry_one(src_top: int, dst_top: int, parts: Parts) -> bool:
    """Copy releases/<from>/parts to releases/<version>/parts (through a new unguessable temporary file);
    False if the old release has no such file.  Neither side is followed through a symlink."""
    import shutil
    import stat

    try:
        sdir = open_dir_path(src_top, parts[:-1])
    except FileNotFoundError:
        return False
    try:
        try:
            fin = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=sdir)
        except FileNotFoundError:
            return False
    finally:
        os.close(sdir)
    with os.fdopen(fin, "rb") as reader:
        st = os.fstat(reader.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OpFailed("carry_over file {} is not a regular file in the old release".format("/".join(parts)))
        ddir = open_parent(dst_top, parts, set())
        tmp = f".{parts[-1][:100]}.upgrader-{token()}"
        try:
            fout = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=ddir)
            try:
                with os.fdopen(fout, "wb") as writer:
                    shutil.copyfileobj(reader, writer, 1 << 20)
                    os.fchown(writer.fileno(), st.st_uid, st.st_gid)
                    os.fchmod(writer.fileno(), stat.S_IMODE(st.st_mode))
                    writer.flush()
                    os.fsync(writer.fileno())
                os.replace(tmp, parts[-1], src_dir_fd=ddir, dst_dir_fd=ddir)
            except BaseException:
                try:
                    os.unlink(tmp, dir_fd=ddir)
                except OSError:
                    pass
                raise
        finally:
            os.close(ddir)
    return True


def op_carry_over(ctx: Ctx, s: Spec) -> Record:
    root = ctx["root"]
    install_dirs(root)
    src = os.open(release_path(root, s["from"]), NOFOLLOW_DIR)
    try:
        dst = os.open(release_path(root, s["version"]), NOFOLLOW_DIR)
        try:
            copied = [rel for rel in s.get("files", []) if carry_one(src, dst, release_relative(rel))]
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return {"copied": copied}


def op_migrate(ctx: Ctx, s: Spec) -> Record:
    import shutil

    root, version = ctx["root"], s["version"]
    install_dirs(root)
    present = [p for p in (config_path(f) for f in s.get("files", [])) if p]
    meta = meta_dir(root, version)
    backup = os.path.join(meta, "config-before")
    if os.path.lexists(backup):
        shutil.rmtree(backup)
    saved = []
    for path in present:
        dst = backup + path
        os.makedirs(os.path.dirname(dst), mode=0o700, exist_ok=True)  # inside root's own 0700 .upgrader/
        copy_file(path, dst)
        saved.append(path)
    set_release_meta(
        root, version, "migration.json", {"from": s.get("from"), "files": saved, "run": ctx["run"], "at": now()}
    )
    proc = run(s["argv"], s.get("timeout", 60))
    if proc.returncode != 0:
        restore_config(root, version)
        raise OpFailed(
            f"config migration failed (exit {proc.returncode}): {tail(proc.stderr).strip()}",
            stdout=tail(proc.stdout),
            stderr=tail(proc.stderr),
            restored=saved,
        )
    return {"backed_up": saved, "stdout": tail(proc.stdout)}


LOG_STAT_TIMEOUT = 5.0  # seconds for the size of a log at a start


def _size_or_zero(path: str) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def remember_log_offsets(ctx: Ctx, paths: list[str]) -> None:
    """Log checks only count lines written after this start: remember where each log ends now."""
    offsets: dict[str, int] = {}
    for path in paths:
        # The service user owns the log and its directory: a symlink there may lead into a mount that
        # never answers.  Not followed (lstat; the check refuses a symlink anyway), and bounded: a start
        # must not hang with the host lock held (issue 25 §4).  Unknown: 0, the whole file is read.
        size = bounded(functools.partial(_size_or_zero, path), LOG_STAT_TIMEOUT)
        offsets[path] = size if isinstance(size, int) else 0
    write_json_atomic(os.path.join(state_dir(ctx["component"]), "start.json"), offsets)


def op_start(ctx: Ctx, s: Spec) -> Record:
    remember_log_offsets(ctx, s.get("logs", []))
    service_start(s["service"])
    forget_stopped(ctx["component"])
    return {"service": service_state(s["service"])}


def op_verify(ctx: Ctx, s: Spec) -> Record:
    ctx["expect_version"] = version = s.get("expect_version")
    ok, results = run_checks(s.get("checks", []), ctx, service=s.get("service"))
    if not ok:
        raise OpFailed(f"verify failed: {failure(results)}", checks=results)
    out: Record = {"checks": results}
    if version and version == current_version(ctx["root"]) and isinstance(s.get("service"), dict):
        # A verified install: keep what it was verified with, for an emergency rollback back to it.
        out["recorded"] = record_definition(ctx, version, s["service"], s.get("checks", []))
    if version and version == current_version(ctx["root"]):
        record_verified(ctx, version, "verify", [c.get("name") for c in s.get("checks", [])])
    return out


def op_bake(ctx: Ctx, s: Spec) -> Record:
    ctx["expect_version"] = s.get("expect_version")
    deadline = time.monotonic() + s["duration"]
    rounds = 0
    while True:
        ok, results = run_checks(s.get("checks", []), ctx, retries=False, service=s.get("service"))
        rounds += 1
        if not ok:
            raise OpFailed(f"bake failed after {rounds} round(s): {failure(results)}", checks=results, rounds=rounds)
        if time.monotonic() >= deadline:
            return {"rounds": rounds}
        pause(ctx, max(0.0, min(s.get("interval", 5), deadline - time.monotonic())))


def op_prune(ctx: Ctx, s: Spec) -> Record:
    import shutil

    root = ctx["root"]
    install_dirs(root)
    keep = max(2, s.get("keep", 3))
    current = current_version(root)
    protected = {current, (release_meta(root, current, "previous.json") or {}).get("version")} if current else set()
    versions = staged_versions(root)
    removable = [v for v in versions if v not in protected]
    removable.sort(key=lambda v: os.stat(os.path.join(releases_dir(root), v)).st_mtime)
    excess = len(versions) - keep
    removed = []
    for version in removable[: max(0, excess)]:
        shutil.rmtree(release_path(root, version), ignore_errors=True)
        record_staged(ctx["component"], version, None)
        removed.append(version)
    for name in os.listdir(releases_dir(root)) if os.path.isdir(releases_dir(root)) else []:
        if name.startswith(".staging-"):
            shutil.rmtree(os.path.join(releases_dir(root), name), ignore_errors=True)
    return {"removed": removed}


def op_unstage(ctx: Ctx, s: Spec) -> Record:
    import shutil

    root, version = ctx["root"], s["version"]
    install_dirs(root)
    entry = staged_entry(root, ctx["component"], version) or {}
    if current_version(root) == version or entry.get("run") != ctx["run"]:
        return {"removed": False}
    shutil.rmtree(release_path(root, version), ignore_errors=True)
    record_staged(ctx["component"], version, None)
    return {"removed": True}
