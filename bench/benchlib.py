"""Shared pieces of the lab benchmarks: hosts, out-of-band host control (lxc-attach), timing, statistics.

Nothing here talks SSH: the benchmarks put hosts into their starting state out of band, so that
the only SSH traffic in a timed trial is the tool under test.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
INVENTORY = REPO / "inventories" / "vagrant.yml"
SSH_CONFIG = REPO / ".lab" / "ssh_config"
KNOWN_HOSTS = REPO / ".lab" / "known_hosts"
ARTIFACTS = REPO / "build" / "artifacts"
RESULTS = BENCH / "results"
BENCH_VENV = BENCH / ".venv"
PROJECT_PYTHON = REPO / ".venv" / "bin" / "python"
if not PROJECT_PYTHON.exists():  # a git worktree has no .venv of its own: the interpreter running the bench
    PROJECT_PYTHON = Path(sys.executable)
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SATURDAY = "2026-11-28T02:00:00-05:00"  # inside the lab playbooks' weekend window, every market closed
# A simulated time is a guard override (break-glass): it needs a reason, and is audited and notified.
WEEKEND = ("--now", SATURDAY, "--reason", "bench: the weekend window, simulated")


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    key: Path

    @property
    def container(self) -> str:
        return f"upg-{self.name}"


def floor_script() -> str:
    """The floor's rollback on one host (bash: the health wait, then the flip, restart and wait)."""
    return (BENCH / "floor" / "health.sh").read_text() + (BENCH / "floor" / "rollback.sh").read_text()


def lab_hosts(inventory: Path = INVENTORY) -> list[LabHost]:
    """Hosts of the lab inventory, in inventory order (keys resolved against the inventory's folder)."""
    data = yaml.safe_load(inventory.read_text())
    base = inventory.parent
    return [
        LabHost(name, h["address"], (base / h["ssh_key"]).resolve())
        for dc in data["datacenters"].values()
        for name, h in dc["hosts"].items()
    ]


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def attach(host: LabHost, script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a bash script as root inside the host's container (no SSH); extra args are $1, $2, …"""
    argv = [
        "lxc-attach",
        "-n",
        host.container,
        "--clear-env",
        "--set-var",
        f"PATH={GUEST_PATH}",
        "--",
        "/bin/bash",
        "-c",
        script,
        "bench",
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def attach_all(hosts: Sequence[LabHost], script: str, *args: str, timeout: float = 60) -> None:
    """`attach` on every host at once; raise with each failing host's output."""
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        procs = list(pool.map(lambda h: attach(h, script, *args, timeout=timeout), hosts))
    bad = [
        f"{h.name}: exit {p.returncode}: {(p.stderr or p.stdout).strip()[-400:]}"
        for h, p in zip(hosts, procs, strict=True)
        if p.returncode != 0
    ]
    if bad:
        raise RuntimeError("out-of-band step failed on:\n  " + "\n  ".join(bad))


# Puts the component on VERSION (already staged) and waits until it reports VERSION: the untimed
# starting state of every trial.  It also drops a host lock a previous trial could have left.
SET_VERSION = r"""
set -eu
c=$1 v=$2 port=$3
root=/opt/$c
[ -d "$root/releases/$v" ] || { echo "release $v not staged under $root" >&2; exit 1; }
systemctl stop "$c.service"
rm -f "$root"/.current.tmp* "/var/lib/upgrader/$c/lock.json"
ln -sfn "releases/$v" "$root/.current.tmp-bench"
mv -T "$root/.current.tmp-bench" "$root/current"
systemctl reset-failed "$c.service" 2>/dev/null || true
systemctl start "$c.service"
for i in $(seq 1 400); do
    body=$(exec 2>/dev/null 3<>/dev/tcp/127.0.0.1/$port && printf 'GET /health HTTP/1.0\r\n\r\n' >&3 && cat <&3) || true
    case "$body" in *"\"version\": \"$v\""*) exit 0;; esac
    sleep 0.02
done
echo "$c never reported $v" >&2
exit 1
"""


def set_version(hosts: Sequence[LabHost], component: str, version: str, port: int) -> None:
    attach_all(hosts, SET_VERSION, component, version, str(port))


def health(host: LabHost, port: int, timeout: float = 2.0) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://{host.address}:{port}/health", timeout=timeout) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def check_versions(hosts: Sequence[LabHost], component: str, version: str, port: int) -> dict[str, str]:
    """host → problem, for every host that is not healthy on `version` with `current` pointing at it."""

    def one(h: LabHost) -> str | None:
        body = health(h, port)
        link = attach(h, f"readlink /opt/{component}/current").stdout.strip()
        if link != f"releases/{version}":
            return f"current -> {link!r}"
        if not body or body.get("status") != "ok" or body.get("version") != version:
            return f"health {body}"
        return None

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        results = list(pool.map(one, hosts))
    return {h.name: r for h, r in zip(hosts, results, strict=True) if r}


@dataclass
class Timed:
    seconds: float
    code: int
    stdout: str
    stderr: str


def timed_run(
    argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path = REPO, timeout: float = 300
) -> Timed:
    """Wall time of a whole command, as an operator would see it (process start to exit)."""
    started = time.perf_counter()
    proc = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return Timed(time.perf_counter() - started, proc.returncode, proc.stdout, proc.stderr)


def git_state() -> str:
    """The code under test (`git describe --always --dirty`): recorded at the start and the end of a run,
    because the working tree is shared and can change while a benchmark runs."""
    proc = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=REPO, check=False
    )
    return proc.stdout.strip() or "?"


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


def rotate(items: Sequence[str], by: int) -> list[str]:
    by %= len(items)
    return list(items[by:]) + list(items[:by])


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_journal(state: Path) -> list[dict[str, Any]]:
    """Entries of the newest run journal under an upgrader state directory."""
    runs = sorted((state / "runs").iterdir())
    lines = (runs[-1] / "journal.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def lab_playbook(path: Path, component: str, version: str, **overrides: Any) -> Path:
    """A lab playbook for `component` `version` (tests/vm/upgrader_cli.py's shape, same checks)."""
    sys.path.insert(0, str(REPO / "tests" / "vm"))
    sys.path.insert(0, str(REPO))
    from upgrader_cli import playbook, write

    return write(path, playbook(component, version, **overrides))


# ---------------------------------------------------------------- fake hosts (fanout_10k, temporal_scale)
# An in-process stand-in for upgrader.transport.fabric_adapter.FabricTransport: each host a FakeHost in
# HOSTS (by inventory name) holding only its installed, previous and staged versions; its serving agent
# answers every op of a program with the agent's own success record.  No packet leaves the process.
class FakeHost:
    __slots__ = ("installed", "previous", "staged")

    def __init__(self, installed: str, previous: str | None, staged: list[str]) -> None:
        self.installed, self.previous, self.staged = installed, previous, staged


CONNECT_S = 0.1  # a stream's start: SSH handshake, sudo and python on a real host (waited, not computed)
EXCHANGE_S = 0.002  # one program's round trip to the host
SWITCH_S = 0.0  # added to a program that switches releases (temporal_scale --switch-seconds)


class FakeStream:
    """A serving agent that answers every op with success (the agent's own output format)."""

    def __init__(self, transport: FakeTransport) -> None:
        self._host = transport.host
        self._name = transport.endpoint.name
        self.alive = True
        time.sleep(CONNECT_S)

    def exchange(self, line: str | None, *, until: str, timeout: float) -> Any:
        from upgrader import agent
        from upgrader.transport.base import Result

        time.sleep(EXCHANGE_S)
        program = json.loads(base64.b64decode((line or "").rsplit("\n", 1)[-1]))
        if SWITCH_S and any(op["op"] == "switch" for op in program["ops"]):
            time.sleep(SWITCH_S)  # a live change that takes a while: a worker can die in the middle of it
        out = [agent.MARKER + json.dumps(self._answer(op)) for op in program["ops"]]
        out.append(f"{agent.END}0")
        return Result(self._name, ("python3",), 0, "\n".join(out) + "\n")

    def _answer(self, op: dict[str, Any]) -> dict[str, Any]:
        h, kind = self._host, op["op"]
        record: dict[str, Any] = {"op": kind, "step": op.get("step"), "ok": True}
        if kind == "facts":
            record.update(
                installed=h.installed,
                previous=h.previous,
                staged=list(h.staged),
                staged_sha={},
                free_disk_mb=50_000,
                service="active",
                lock=None,
                reported_version=h.installed,
            )
        elif kind == "stage":
            h.staged.append(op["version"])
        elif kind == "switch":
            h.previous, h.installed = h.installed, op["version"]
        elif kind == "rollback":
            to = op.get("to") or h.previous
            record.update({"from": h.installed, "to": to, "steps": ["stop", "switch", "start", "verify"]})
            h.previous, h.installed = h.installed, to
        if PERSIST is not None and kind in ("stage", "switch", "rollback"):
            keep(self._name, h)
        return record

    def close(self) -> None:
        self.alive = False


class FakeTransport:
    """upgrader.transport.base.Transport for one fake host; connecting costs nothing."""

    def __init__(self, endpoint: Any, timeouts: Any = None, *_gateways: Any, **_kw: Any) -> None:
        from upgrader.transport.base import Timeouts  # (jump hosts, if the adapter takes them: no SSH here)

        self.endpoint = endpoint
        self.timeouts = timeouts or Timeouts()
        self.host = HOSTS[endpoint.name]

    def run(
        self, argv: Sequence[str], *, sudo: bool = False, timeout: float | None = None, idempotent: bool = False
    ) -> Any:
        from upgrader.transport.base import Result

        return Result(self.endpoint.name, tuple(argv), 0)

    def put(self, local: Path, remote: str, *, timeout: float | None = None) -> None:
        local.stat()  # the file must exist, as for a real upload

    def get(self, remote: str, local: Path, *, timeout: float | None = None) -> None:
        raise NotImplementedError("the engine does not download during apply or rollback")

    def stream(self, argv: Sequence[str], *, sudo: bool = False) -> FakeStream:
        return FakeStream(self)

    def connect(self) -> None:
        pass

    def close(self) -> None:
        pass


HOSTS: dict[str, FakeHost] = {}
# Where each fake host's versions are written after every change (None: memory only), so a worker process
# killed mid-run leaves its hosts as they were for the one that replaces it, as real hosts would be.
PERSIST: Path | None = None


def keep(name: str, host: FakeHost) -> None:
    assert PERSIST is not None
    tmp = PERSIST / f".{name}.tmp"
    tmp.write_text(json.dumps([host.installed, host.previous, host.staged]))
    tmp.replace(PERSIST / name)


def kept(name: str) -> FakeHost | None:
    """The host as the last process that changed it left it (PERSIST), or None."""
    if PERSIST is None or not (PERSIST / name).exists():
        return None
    installed, previous, staged = json.loads((PERSIST / name).read_text())
    return FakeHost(installed, previous, staged)
