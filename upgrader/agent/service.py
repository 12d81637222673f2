"""Stopping, starting and asking the state of the component's service."""

from __future__ import annotations

from .errors import OpFailed
from .processes import run, tail

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .shapes import Spec


def service_state(svc: Spec) -> str:
    if svc.get("systemd"):
        proc = run(["systemctl", "is-active", svc["systemd"]], 10)
        return proc.stdout.strip() or "unknown"
    proc = run(svc["status"], svc.get("start_timeout", 30))
    return "active" if proc.returncode == 0 else "inactive"


def service_stop(svc: Spec) -> str:
    """Stop within stop_timeout; a systemd unit that hangs on stop is then killed, and we say so."""
    timeout = svc.get("stop_timeout", 30)
    argv = ["systemctl", "stop", svc["systemd"]] if svc.get("systemd") else svc["stop"]
    try:
        proc = run(argv, timeout)
    except OpFailed:
        if not svc.get("systemd"):
            raise
        unit = svc["systemd"]
        run(["systemctl", "kill", "--signal=SIGKILL", unit], 10)
        proc = run(["systemctl", "stop", unit], 10)
        if proc.returncode == 0 and service_state(svc) != "active":
            return f"killed after {timeout:g}s"
        raise OpFailed(f"{unit} did not stop within {timeout:g}s, even after SIGKILL") from None
    if proc.returncode != 0:
        raise OpFailed(f"stop failed: {tail(proc.stderr or proc.stdout).strip()}", exit_code=proc.returncode)
    return "stopped"


def service_start(svc: Spec) -> None:
    timeout = svc.get("start_timeout", 30)
    argv = ["systemctl", "start", svc["systemd"]] if svc.get("systemd") else svc["start"]
    proc = run(argv, timeout)
    if proc.returncode != 0 and svc.get("systemd"):
        # A unit that crashed repeatedly (a bad release) can hit systemd's start rate limit; clearing
        # it only when a start fails saves a systemctl call on every healthy start.
        run(["systemctl", "reset-failed", svc["systemd"]], 10)
        proc = run(argv, timeout)
    if proc.returncode != 0:
        raise OpFailed(f"start failed: {tail(proc.stderr or proc.stdout).strip()}", exit_code=proc.returncode)
