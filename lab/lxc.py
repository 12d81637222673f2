"""Out-of-band access to the lab containers (no SSH): state, attach, list."""

from __future__ import annotations

import subprocess

from lab import config
from lab.shell import LabError, run

GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def attach(
    container: str, script: str, *, input: bytes | None = None, timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess:
    """Run a /bin/sh script as root inside the container; stdin is `input`."""
    argv = [
        "lxc-attach",
        "-n",
        container,
        "--clear-env",
        "--set-var",
        f"PATH={GUEST_PATH}",
        "--",
        "/bin/sh",
        "-c",
        script,
    ]
    proc = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise LabError(
            f"{container}: script failed with exit {proc.returncode}:\n"
            f"{proc.stdout.decode(errors='replace')}{proc.stderr.decode(errors='replace')}"
        )
    return proc


def state(container: str) -> str:
    """RUNNING, STOPPED, FROZEN, ... or ABSENT if there is no such container."""
    proc = run(["lxc-info", "-n", container, "-s"], capture=True, check=False, quiet=True)
    if proc.returncode != 0:
        return "ABSENT"
    return proc.stdout.split(":", 1)[1].strip() if ":" in proc.stdout else "UNKNOWN"


def lab_containers() -> list[str]:
    """Every container of this lab (named upg-*), whatever state it is in."""
    out = run(["lxc-ls", "-1"], capture=True, quiet=True).stdout
    return sorted(name for name in out.split() if name.startswith(config.CONTAINER_PREFIX))
