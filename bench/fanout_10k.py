"""Benchmark: `upgrader apply` (bake 0) and `upgrader rollback` on 1,000 and 10,000 hosts, in-process fake hosts.

    .venv/bin/python bench/fanout_10k.py [--hosts 1000,10000] [--parallel 32] [--out FILE]

Measures the controller only: peak RSS, peak thread count and peak open file descriptors, overall
and per host, and whether memory per host stays flat from 1k to 10k hosts.

The hosts are a fake transport (``FakeTransport``, implementing upgrader.transport.base's
``Transport`` and ``Stream``), put in place of the Fabric adapter, so the real CLI runs end to end:
argument parsing, inventory and playbook loading, the RLIMIT_NOFILE check, early starts, Pool.warm,
live facts, planning, journaling (fsync'd, in a state directory under /dev/shm), staging, canary
and waves, lock release; rollback the same.  The fake answers the agent protocol the engine
speaks (engine/remote.py): it reads each program off the stream (the serving agent's preamble,
then one base64 JSON program per line) and answers each op with a canned successful record
(``@@upgrader {json}`` lines, then ``@@upgrader-end 0``), keeping only each host's installed,
previous and staged versions.  So it measures the orchestrator's own cost per host; no op
runs on any host and no packet leaves the process (the addresses are 198.18.0.0/15, never used).

Each (hosts, command) runs in a fresh child process, so peaks are that run's own; a sampler thread
reads /proc/self/status (VmRSS, Threads) and /proc/self/fd every 10 ms; ru_maxrss gives the true
RSS peak.  Per-host memory is (peak RSS − RSS after imports) / hosts.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# The upgrader under test: --code, a git worktree of a commit (not the shared working tree), else this tree.
CODE = Path(sys.argv[sys.argv.index("--code") + 1]).resolve() if "--code" in sys.argv else REPO
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(CODE))
PLAYBOOK = CODE / "playbooks" / "riskgw-2.5.0.yml"
ARTIFACTS = REPO / "build" / "artifacts"
FROM, TO = "2.4.0", "2.5.0"
SATURDAY = "2026-11-28T02:00:00-05:00"  # every market closed: the window guard admits the run

from benchlib import CONNECT_S, EXCHANGE_S, HOSTS, FakeHost, FakeTransport  # noqa: E402  (the fake hosts, shared)


# ---------------------------------------------------------------- inputs
def write_inputs(directory: Path, hosts: int) -> tuple[Path, Path]:
    """A 2-datacenter inventory of riskgw hosts and a bake-0 copy of the riskgw playbook."""
    import yaml

    per_dc = {"ny5": hosts - hosts // 2, "ch2": hosts // 2}
    dcs = {}
    for d, (dc, count) in enumerate(per_dc.items()):
        dcs[dc] = {
            "timezone": "America/New_York",
            "markets": ["XNYS"],
            "jump": {"address": f"198.18.{d}.1"},
            "hosts": {
                f"{dc}-{i:05d}": {
                    "address": f"198.{18 + d}.{i // 250 + 1}.{i % 250 + 1}",
                    "roles": ["oe"],
                    "canary": i == 0,
                }
                for i in range(count)
            },
        }
    inventory = {
        "name": f"fanout-{hosts}",
        "known_hosts": str(directory / "known_hosts"),
        "defaults": {"user": "ops"},
        "roles": {"oe": ["riskgw"]},
        "datacenters": dcs,
    }
    (directory / "known_hosts").write_text("")
    inv = directory / "inventory.yml"
    inv.write_text(yaml.safe_dump(inventory, sort_keys=False))
    spec = yaml.safe_load(PLAYBOOK.read_text())
    spec["canary"]["bake"] = "0s"
    spec["rollout"]["max_in_flight_per_datacenter"] = 1000
    spec["rollout"]["max_failures"] = 1
    pb = directory / "riskgw-2.5.0.yml"
    pb.write_text(yaml.safe_dump(spec, sort_keys=False))
    return inv, pb


# ---------------------------------------------------------------- the child: one command, measured
def _status() -> tuple[int, int]:
    rss = threads = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss, threads


class Sampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="sampler", daemon=True)
        self.peak = {"rss": 0, "threads": 0, "fds": 0}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            rss, threads = _status()
            fds = len(os.listdir("/proc/self/fd"))
            self.peak = {
                "rss": max(self.peak["rss"], rss),
                "threads": max(self.peak["threads"], threads),
                "fds": max(self.peak["fds"], fds),
            }
            self.stop.wait(0.01)


def bounded_starts(parallel: int) -> None:
    """The proposed fix, patched in: Pool.warm and early.start start agents on --parallel threads
    (engine.pool.in_background) instead of one thread per host."""
    import types

    from upgrader.commands import early
    from upgrader.engine import pool, remote

    def warm(self: pool.Pool, hosts: Any, python: str) -> None:
        pool.in_background(
            lambda s: remote.start(s, python), [self.session(h) for h in hosts], self.parallel, "connect"
        )

    pool.Pool.warm = warm  # type: ignore[method-assign]
    pending: list[tuple[Any, tuple[Any, ...]]] = []

    class Thread:  # what early.start asks for, one per host: queued, then run on `parallel` workers
        def __init__(self, target: Any, args: tuple[Any, ...], name: str, daemon: bool) -> None:
            self.item = (target, args)

        def start(self) -> None:
            if not pending:
                threading.Timer(
                    0, lambda: pool.in_background(lambda i: i[0](*i[1]), list(pending), parallel, "early")
                ).start()
            pending.append(self.item)

    early.threading = types.SimpleNamespace(Thread=Thread)  # type: ignore[assignment]


def child(command: str, hosts: int, parallel: int, work: Path, proposed: bool) -> dict[str, Any]:
    import upgrader.transport.fabric_adapter as fabric_adapter  # the real module: its class is replaced below
    from upgrader.cli import main as cli

    fabric_adapter.FabricTransport = FakeTransport  # type: ignore[misc,assignment]
    if proposed:
        bounded_starts(parallel)
    inv, pb = work / "inventory.yml", work / "riskgw-2.5.0.yml"
    names = [f"{dc}-{i:05d}" for dc, n in (("ny5", hosts - hosts // 2), ("ch2", hosts // 2)) for i in range(n)]
    for name in names:
        HOSTS[name] = (
            FakeHost(FROM, "2.3.0", ["2.3.0", FROM])
            if command in ("facts", "apply")
            else FakeHost(TO, FROM, [FROM, TO])
        )
    state = work / "state"
    common = ["--parallel", str(parallel), "--log-format", "plain"]
    if command == "facts":
        argv = [
            "--state-dir",
            str(state),
            "facts",
            str(pb),
            "-i",
            str(inv),
            "--out",
            str(work / "facts.json"),
            "--parallel",
            str(parallel),
        ]
    elif command == "apply":
        argv = [
            "--state-dir",
            str(state),
            "apply",
            str(pb),
            "-i",
            str(inv),
            "--yes",
            "--now",
            SATURDAY,
            "--reason",
            "bench: simulated",
            "--artifacts",
            str(ARTIFACTS),
            *common,
        ]
    else:
        argv = [
            "--state-dir",
            str(state),
            "rollback",
            "riskgw",
            "-i",
            str(inv),
            "--playbook",
            str(pb),
            "--reason",
            "fanout bench",
            "--yes",
            *common,
        ]
    base_rss, base_threads = _status()
    base_fds = len(os.listdir("/proc/self/fd"))
    sampler = Sampler()
    sampler.start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    errors = io.StringIO()
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(errors):
        code = cli.main(argv)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    sampler.stop.set()
    sampler.join()
    wrong = [n for n in names if HOSTS[n].installed != (TO if command == "apply" else FROM)]
    if command == "facts":
        gathered = json.loads((work / "facts.json").read_text())["hosts"]
        wrong = [n for n in names if n not in gathered]
    peak_rss = max(sampler.peak["rss"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {
        "command": command,
        "hosts": hosts,
        "parallel": parallel,
        "code": "proposed" if proposed else "committed",
        "exit_code": code,
        "wrong_version": len(wrong),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "base_rss_mb": round(base_rss / 2**20, 1),
        "peak_rss_mb": round(peak_rss / 2**20, 1),
        "rss_per_host_kb": round((peak_rss - base_rss) / hosts / 1024, 2),
        "base_threads": base_threads,
        "peak_threads": sampler.peak["threads"],
        "base_fds": base_fds,
        "peak_fds": sampler.peak["fds"],
        "cpu_per_host_ms": round(cpu / hosts * 1000, 3),
        "nofile_soft_after": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        **({"stderr_tail": errors.getvalue()[-1500:]} if code else {}),
    }


def prepare(hosts: int, parallel: int) -> Path:
    work = Path(tempfile.mkdtemp(prefix=f"fanout-{hosts}-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    write_inputs(work, hosts)
    return work


def measure(command: str, hosts: int, parallel: int, work: Path, proposed: bool) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            command,
            "--hosts",
            str(hosts),
            "--parallel",
            str(parallel),
            "--work",
            str(work),
            "--code",
            str(CODE),
            *(["--proposed"] if proposed else []),
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=REPO,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{command} on {hosts} hosts failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", default="1000,10000", help="comma-separated host counts")
    p.add_argument("--parallel", type=int, default=32)
    p.add_argument("--out", type=Path)
    p.add_argument(
        "--proposed",
        action="store_true",
        help="also measure with the proposed bounded Pool.warm/early.start patched in",
    )
    p.add_argument("--code", type=Path, help="run upgrader from this tree (`git worktree add /tmp/head HEAD`)")
    p.add_argument("--child", choices=["facts", "apply", "rollback"], help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, int(args.hosts), args.parallel, args.work, args.proposed)))
        return 0
    import shutil

    rows = []
    for proposed in (False, True) if args.proposed else (False,):
        for hosts in [int(h) for h in args.hosts.split(",")]:
            work = prepare(hosts, args.parallel)
            try:
                for command in ("facts", "apply", "rollback"):
                    load = os.getloadavg()[0]
                    row = measure(command, hosts, args.parallel, work, proposed)
                    row["load_avg_1m_before"] = round(load, 2)
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    by = {(r["code"], r["command"], r["hosts"]): r for r in rows}
    counts = sorted({r["hosts"] for r in rows})
    ratios = {}
    for key, command in ((c, m) for c in sorted({r["code"] for r in rows}) for m in ("facts", "apply", "rollback")):
        if len(counts) >= 2:
            lo, hi = counts[0], counts[-1]
            a, b = by[(key, command, lo)], by[(key, command, hi)]
            marginal = (b["peak_rss_mb"] - a["peak_rss_mb"]) * 1024 / (hi - lo)
            ratios[f"{key} {command}"] = {
                f"rss_per_host_{hi}_over_{lo}": round(b["rss_per_host_kb"] / a["rss_per_host_kb"], 2),
                f"marginal_rss_per_host_kb_{lo}_to_{hi}": round(marginal, 2),
                f"cpu_per_host_{hi}_over_{lo}": round(b["cpu_per_host_ms"] / a["cpu_per_host_ms"], 2),
                "peak_threads": [a["peak_threads"], b["peak_threads"]],
                "peak_fds": [a["peak_fds"], b["peak_fds"]],
            }
    git = subprocess.run(
        ["git", "-C", str(CODE), "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    ).stdout.strip()
    result = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "git": f"{git} ({CODE})",
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "transport": "in-process fake (canned successful agent records)",
            "fake_latency_s": {"stream_start": CONNECT_S, "exchange": EXCHANGE_S},
        },
        "runs": rows,
        "ratios": ratios,
    }
    out = args.out or BENCH / "results" / f"fanout_10k-{datetime.now(UTC).date().isoformat()}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(ratios, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
