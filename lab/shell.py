"""Running commands on the controller, and the timings record."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from lab import config


class LabError(RuntimeError):
    """A lab step failed; the message says which command and what it printed."""


def log(message: str) -> None:
    print(f"[lab] {message}", file=sys.stderr, flush=True)


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    capture: bool = False,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    cwd: os.PathLike | str | None = None,
    timeout: float | None = None,
    quiet: bool = False,
) -> subprocess.CompletedProcess:
    """Run argv (never through a shell). With capture, stdout/stderr are returned as text."""
    if not quiet:
        log("$ " + shlex.join(str(a) for a in argv))
    full_env = {**os.environ, **(env or {})}
    proc: subprocess.CompletedProcess[Any] = subprocess.run(
        [str(a) for a in argv],
        input=input,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    if capture:
        proc.stdout = proc.stdout.decode(errors="replace")
        proc.stderr = proc.stderr.decode(errors="replace")
    if check and proc.returncode != 0:
        detail = f"\n{proc.stderr.strip()}" if capture and proc.stderr else ""
        raise LabError(f"command failed with exit {proc.returncode}: {shlex.join(map(str, argv))}{detail}")
    return proc


def which(name: str) -> bool:
    return subprocess.run(["sh", "-c", f"command -v {shlex.quote(name)}"], capture_output=True).returncode == 0


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    """Time a step and record it in .lab/timings.json (last value per label)."""
    start = time.monotonic()
    yield
    seconds = round(time.monotonic() - start, 1)
    log(f"{label}: {seconds} s")
    record_timing(label, seconds)


def record_timing(label: str, seconds: float) -> None:
    config.STATE_DIR.mkdir(parents=True, exist_ok=True)
    data = load_timings()
    data[label] = {"seconds": seconds, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    config.TIMINGS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def load_timings() -> dict:
    try:
        return json.loads(config.TIMINGS.read_text())
    except (FileNotFoundError, ValueError):
        return {}
