"""Health checks: one attempt (probe), bounded in time, and the retry loop (run_checks)."""

from __future__ import annotations

import json
import os
import re
import time

from .errors import OpFailed
from .fs import read_json
from .http_get import http_get
from .processes import run, tail
from .program_lock import TAKEOVER_POLL, check_takeover
from .service import service_state
from .service_scope import find_process, process_scope, served_by_service, url_host_port
from .state import state_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from .shapes import Ctx, Record, Spec

    T = TypeVar("T")


def reported_version(check: Spec, timeout: float) -> str | None:
    """The version the component reports: with a ``pattern``, what it finds in the output or body (its
    first group, else the whole match; None if it finds nothing), else the JSON field or the stripped text."""
    if check.get("url"):
        _status, text = http_get(check["url"], timeout)
    else:
        text = run(check["argv"], timeout).stdout
    if check.get("pattern"):
        return extract_version(check["pattern"], text)
    if check.get("url"):
        try:
            return str(json.loads(text)[check.get("field", "version")])
        except (ValueError, KeyError, TypeError):
            return text.strip()
    return text.strip()


def extract_version(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        return None
    if match.re.groups and match.group(1) is not None:
        return match.group(1)
    return match.group(0)


# Checks are run as root but look at what others control: the service user owns its log file and can
# put a FIFO or a symlink there; any local user can run a process whose command line holds the match
# string.  So (issue 25 §4): every check is bounded from this side by its timeout (bounded), whatever
# a file, a mount or a peer does; files are opened without following a final symlink and without
# waiting (O_NOFOLLOW|O_NONBLOCK), and only a regular file is read, at most LOG_READ bytes; a process
# counts only if it is in the service's own control group (its systemd unit) and, when the check
# names one, runs as the configured user.
CHECK_GRACE = 1.0  # seconds past a check's timeout before it is abandoned (its own timeouts fire first)
COMMAND_GRACE = 5.0  # a command check's run() kills and reaps at its timeout; this is only the backstop
LOG_READ = 8 << 20  # bytes of a log read at most, from the offset remembered at the restart


def check_once(check: Spec, ctx: Ctx, service: Spec | None = None) -> str | None:
    """Return None when the check passes, else a short reason.  Never takes much longer than the
    check's timeout, whatever it meets (see bounded)."""
    timeout = check.get("timeout", 5)
    grace = COMMAND_GRACE if check["kind"] == "command" else CHECK_GRACE
    return bounded(lambda: probe(check, ctx, timeout, service), timeout + grace)


def bounded(fn: Callable[[], T], seconds: float) -> T | str:
    """``fn()``, or a reason if it has not returned within ``seconds``: it is then left running in a
    daemon thread (a read of a hung mount cannot be interrupted) and the check fails."""
    import threading

    box: list[tuple[bool, Any]] = []

    def target() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:  # handed to the caller's thread below
            box.append((False, exc))

    worker = threading.Thread(target=target, name="upgrader-check", daemon=True)
    worker.start()
    worker.join(seconds)
    if not box:
        return f"did not finish within {seconds:g}s (a file, mount or peer that does not answer?)"
    ok, value = box[0]
    if not ok:
        raise value
    result: T = value
    return result


def probe(check: Spec, ctx: Ctx, timeout: float, service: Spec | None = None) -> str | None:
    """One attempt of ``check``: None when it passes, else a short reason."""
    import socket

    kind = check["kind"]
    spec = check[kind]
    try:
        if kind == "command":
            proc = run(spec["argv"], timeout)
            if proc.returncode != spec.get("exit_code", 0):
                return f"exit {proc.returncode}: {tail(proc.stderr or proc.stdout).strip()[-300:]}"
            if spec.get("stdout") and not re.search(spec["stdout"], proc.stdout):
                return "output does not match {!r}".format(spec["stdout"])
        elif kind == "tcp":
            host = spec.get("host", "127.0.0.1")
            socket.create_connection((host, spec["port"]), timeout=timeout).close()
            return served_by_service(host, spec["port"], ctx, service)
        elif kind == "http":
            status, body = http_get(spec["url"], timeout)
            if status != spec.get("status", 200):
                return "HTTP {} (expected {}): {}".format(status, spec.get("status", 200), body[:200])
            if spec.get("body") and not re.search(spec["body"], body):
                return "body does not match {!r}: {}".format(spec["body"], body[:200])
            return served_by_service(*url_host_port(spec["url"]), ctx, service)
        elif kind == "process":
            cgroup, uid, where = process_scope(spec, ctx, service)
            if not find_process(spec["match"], cgroup, uid):
                return "no process matches {!r} {}".format(spec["match"], where)
        elif kind == "log":
            offset = (read_json(os.path.join(state_dir(ctx["component"]), "start.json"), {}) or {}).get(spec["path"], 0)
            if not log_matches(spec["path"], offset, spec["pattern"]):
                return "no line matching {!r} in {} since the restart".format(spec["pattern"], spec["path"])
        elif kind == "version":
            expected = ctx.get("expect_version")
            got = reported_version(spec, timeout)
            if got is None:  # compared as reported: never a normalised form of either side
                return "no version found: pattern {!r} does not match the output".format(spec["pattern"])
            if expected is not None and got != expected:
                return f"reports version {got!r}, expected {expected!r}"
            if spec.get("url"):
                return served_by_service(*url_host_port(spec["url"]), ctx, service)
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    except OpFailed as exc:
        return str(exc)
    return None


def log_matches(path: str, offset: int, pattern: str) -> bool:
    """Does a line written since ``offset`` match?  The file is the service user's to replace: it is
    opened without following a final symlink and without waiting (a FIFO would block open() for ever),
    and only a regular file is read, at most LOG_READ bytes."""
    import errno
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OpFailed(f"log {path} is a symlink: name the file itself") from None
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OpFailed(f"log {path} is not a regular file")
        start = offset if 0 <= offset <= st.st_size else 0  # rotated or truncated: read it all
        data = os.pread(fd, LOG_READ, start)
    finally:
        os.close(fd)
    return re.search(pattern, data.decode("utf-8", "replace"), re.MULTILINE) is not None


FAST_POLL = 0.05  # seconds: cheap probes are polled this often within a check's window
# How often a failing check also asks whether the service died.  systemctl is a process of its own,
# ~10 ms of CPU each: asked on every 50 ms poll on many hosts sharing cores, it slowed the very
# start-up being waited for.
SERVICE_POLL = 1.0


def pause(ctx: Ctx, seconds: float) -> None:
    """Sleep, but end the operation as soon as a rollback asks for the host: checks and bakes only
    watch, so they can stop anywhere (a rollback must not wait out a canary's bake)."""
    deadline = time.monotonic() + seconds
    while True:
        check_takeover(ctx)
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, TAKEOVER_POLL))


def run_checks(
    checks: list[Spec], ctx: Ctx, retries: bool = True, service: Spec | None = None
) -> tuple[bool, list[Record]]:
    """Run every check; each may take ``retries`` x ``interval`` to pass.  Return (ok, results).

    Cheap probes (http, tcp, process, log, version) are polled every FAST_POLL within that
    window, so a service that comes up in 300 ms is seen at 300 ms, not at the next interval.
    A service that has died (failed, inactive) fails the check within SERVICE_POLL: waiting cannot help.
    """
    results = []
    ok = True
    for check in checks:
        interval = check.get("interval", 1)
        window = (check.get("retries", 0) if retries else 0) * interval
        poll = interval if check["kind"] == "command" else min(interval, FAST_POLL)
        deadline = time.monotonic() + window
        attempt = 0
        next_service_poll = time.monotonic() + SERVICE_POLL
        while True:
            attempt += 1
            reason = check_once(check, ctx, service)
            if reason is None:
                break
            left = deadline - time.monotonic()
            if service is not None and (left <= 0 or time.monotonic() >= next_service_poll):
                next_service_poll = time.monotonic() + SERVICE_POLL
                state = service_state(service)
                if state not in ("active", "activating", "reloading"):
                    reason = f"service is {state} ({reason})"
                    break
            if left <= 0:
                break
            pause(ctx, min(poll, left))
        results.append({"check": check["name"], "ok": reason is None, "reason": reason, "attempts": attempt})
        if reason is not None:
            ok = False
            break
    return ok, results


def failure(results: list[Record]) -> str:
    bad = [r for r in results if not r["ok"]]
    return "{}: {}".format(bad[0]["check"], bad[0]["reason"]) if bad else "unknown"
