"""`bench/scale.py --engine local,temporal`: apply and emergency rollback by each engine on the same real hosts.

Per round and engine (interleaved: local, temporal, local, temporal, …), on the scale lab's N hosts
through the 2 jump hosts:

1. ``apply`` of feedhandler 3.1.0 (bake 0), timed from the command's start to its end;
2. ``rollback-cmd``: the emergency command ``upgrader rollback feedhandler`` (the market-hours path: it
   acts locally whatever the engine; with no Temporal run in flight it is the same command in both
   rounds, a reference row);
3. ``abort``: the run's own emergency rollback.  The same apply with a manual gate before its LAST phase
   (a third datacenter ``gt1`` of one extra host, entered after ``pause_between_datacenters: manual``;
   the gate before ch2 is promoted untimed), so that every measured host is upgraded and the run waits at
   the gate; then ``upgrader abort RUN --reason bench`` and the time from the abort to the run's end
   (the apply process's exit): locally the local driver puts every host back, under Temporal the hosts
   child workflow's sliding window.

After each step every measured host is checked on the expected version (``problems``).

The Temporal side: a dev server at default limits (tests/temporal_server.py, loopback), one control
worker and ONE datacenter worker process per datacenter (``upgrader worker``, separate OS processes, ended
by their PIDs), their CPU seconds and peak PSS measured per step beside the client's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import benchlib as bl
import yaml

GATE_DC = "gt1"  # the extra datacenter whose one host stands behind the last gate
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process and its reaped children (a worker runs no children: paramiko)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / TICK
    except (OSError, ValueError, IndexError):
        return 0.0


class Peaks(threading.Thread):
    """Peak PSS (MB) of each named process tree, sampled every 0.2 s while a step runs."""

    def __init__(self, roots: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.peak = {name: 0.0 for name in roots}
        self.done = threading.Event()

    def run(self) -> None:
        from scale import _proc, _tree

        while not self.done.is_set():
            for name, pid in list(self.roots.items()):
                pss = sum(_proc(p)[0] for p in _tree(pid)) / 2**20
                self.peak[name] = max(self.peak.get(name, 0.0), pss)
            self.done.wait(0.2)


class Temporal:
    """A dev server, a control worker and one worker per datacenter, all started and ended by PID."""

    def __init__(self, work: Path, inventory: Path, state: Path, artifacts: Path, dcs: list[str], args: Any) -> None:
        sys.path.insert(0, str(bl.REPO))
        from tests.temporal_server import DevServer

        (work / "temporal").mkdir(parents=True, exist_ok=True)
        self.server = DevServer(work / "temporal")
        self.work, self.inventory, self.state, self.artifacts, self.dcs = work, inventory, state, artifacts, dcs
        self.args = args
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}

    def start(self, env: dict[str, str], cwd: Path) -> None:
        self.server.start()
        self.env = {**env, "UPGRADER_TEMPORAL_ADDRESS": self.server.address}
        base = [str(bl.PROJECT_PYTHON), "-m", "upgrader", "worker", "-i", str(self.inventory)]
        base += ["--artifacts", str(self.artifacts), "--log-file", str(self.work / "workers.log")]
        argvs = {"control": [*base, "--control"]}
        hosts_per_dc = max(1, int(self.args.hosts_per_dc))
        for dc in self.dcs:
            argvs[f"worker-{dc}"] = [
                *base,
                "--datacenter",
                dc,
                "--parallel",
                str(self.args.worker_parallel or hosts_per_dc),
                "--activities-per-second",
                str(self.args.activities_per_second),
            ]
        for name, argv in argvs.items():
            log = (self.work / f"{name}.out").open("ab")
            self.workers[name] = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        time.sleep(5)  # the workers connect and start polling
        dead = {n: p.returncode for n, p in self.workers.items() if p.poll() is not None}
        if dead:
            tails = {n: (self.work / f"{n}.out").read_text()[-800:] for n in dead}
            raise RuntimeError(f"temporal workers exited at start: {dead} {tails}")

    def pids(self) -> dict[str, int]:
        out = {name: p.pid for name, p in self.workers.items()}
        if self.server.proc is not None:
            out["server"] = self.server.proc.pid
        return out

    def stop(self) -> None:
        for p in self.workers.values():
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)  # by PID: only the workers this bench started
        for p in self.workers.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        self.server.stop()


def gated_inventory(scale: Any, extra: Any) -> Path:
    """The bench's inventory plus a datacenter ``gt1`` of one extra host (reached through ch2's jump host)."""
    data = yaml.safe_load(scale.inventory.read_text())
    full = yaml.safe_load(bl.REPO.joinpath("inventories", "scale.yml").read_text())
    src = full["datacenters"][extra.dc]
    data["datacenters"][GATE_DC] = {
        **{k: v for k, v in src.items() if k != "hosts"},
        "hosts": {extra.name: src["hosts"][extra.name]},
    }
    path = scale.work / "inventory-gated.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def private_artifacts(work: Path) -> Path:
    """A copy of the release tarballs: the Temporal runs store their plans under <store>/plans/, which must
    not go into the shared build directory."""
    store = work / "artifacts"
    store.mkdir(mode=0o700, exist_ok=True)
    for f in bl.ARTIFACTS.iterdir():
        if f.is_file():
            shutil.copy2(f, store / f.name)
    return store


class Engines:
    """The interleaved engine comparison on one Scale (bench/scale.py) of N hosts."""

    def __init__(self, scale: Any, extra: Any, args: Any) -> None:
        self.scale, self.extra, self.args = scale, extra, args
        self.inventory = gated_inventory(scale, extra)
        scale.inventory = self.inventory  # every command uses the one inventory the workers were given
        self.artifacts = private_artifacts(scale.work)
        self.limit = ["--limit", "dc:ny5,dc:ch2"]
        key = scale.work / "plan.key"
        key.write_text(os.urandom(32).hex())
        key.chmod(0o600)
        self.env = {
            "UPGRADER_STATE_DIR": str(scale.state),
            "UPGRADER_OPERATOR": "bench",
            "UPGRADER_ARTIFACTS": str(self.artifacts),
            "UPGRADER_PLAN_KEY": key.read_text(),
        }
        self.gated = bl.lab_playbook(
            scale.work / f"feedhandler-{scale_from()}-gated.yml",
            "feedhandler",
            scale_from(),
            canary={"bake": "0s"},
            rollout={
                "batch": "100%",
                "max_in_flight_per_datacenter": scale.in_flight,
                "datacenter_order": ["ny5", "ch2", GATE_DC],
                "pause_between_datacenters": "manual",
            },
            checks=scale.checks,
        )
        self.temporal: Temporal | None = None

    # -- commands
    def cli(self, engine: str, *args: str) -> list[str]:
        extra = ["--engine", engine] if engine == "temporal" else []
        return [*scale_upgrader(), *args, "-i", str(self.inventory), "--parallel", str(self.scale.parallel), *extra]

    def cwd(self) -> Path:
        import scale

        return Path(scale.CODE.get("PYTHONPATH", bl.REPO))

    def full_env(self) -> dict[str, str]:
        import scale

        return {**self.env, **scale.CODE, **(self.temporal.env if self.temporal else {})}

    def timed(self, argv: list[str]) -> dict[str, Any]:
        """scale.measured, with the workers' and server's CPU and peak PSS over the same interval."""
        import scale

        roots = self.temporal.pids() if self.temporal else {}
        before = {n: cpu_seconds(p) for n, p in roots.items()}
        peaks = Peaks(roots)
        peaks.start()
        res = scale.measured(argv, env=self.full_env(), cwd=self.cwd())
        peaks.done.set()
        peaks.join()
        res["processes"] = {
            n: {"cpu_s": round(cpu_seconds(p) - before[n], 3), "peak_pss_mb": round(peaks.peak[n], 1)}
            for n, p in roots.items()
        }
        return res

    def apply(self, engine: str) -> dict[str, Any]:
        pb = str(self.scale.playbook)
        return self.timed(self.cli(engine, "apply", pb, "--yes", *bl.WEEKEND, "--log-format", "plain", *self.limit))

    def rollback_cmd(self, engine: str) -> dict[str, Any]:
        argv = [*scale_upgrader(), "rollback", "feedhandler", "-i", str(self.inventory), "--parallel"]
        argv += [str(self.scale.parallel), "--reason", "bench", "--yes", "--log-format", "plain"]
        argv += ["--playbook", str(self.scale.playbook), *self.limit]
        return self.timed(argv)

    def abort(self, engine: str) -> dict[str, Any]:
        """The gated apply to its last gate (untimed), then abort → the run's end, timed."""
        state = Path(self.env["UPGRADER_STATE_DIR"])
        known = set((state / "runs").glob("*")) if (state / "runs").exists() else set()
        argv = self.cli(engine, "apply", str(self.gated), "--yes", *bl.WEEKEND, "--log-format", "plain")
        out = (self.scale.work / f"gated-{engine}.out").open("w")
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.cwd(),
            env={**os.environ, **self.full_env()},
        )
        try:
            journal = self._new_journal(state, known, proc)
            run_id = journal.parent.name
            self._wait_gate(journal, "enter-ch2", proc)
            promote = subprocess.run(
                [*scale_upgrader(), "promote", run_id, "--reason", "bench: untimed setup"],
                capture_output=True,
                text=True,
                env={**os.environ, **self.full_env()},
                cwd=self.cwd(),
                timeout=120,
            )
            if promote.returncode != 0:
                raise RuntimeError(f"promote enter-ch2 failed: {promote.stdout[-400:]} {promote.stderr[-400:]}")
            self._wait_gate(journal, f"enter-{GATE_DC}", proc)
            return self._timed_abort(run_id, proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()

    def _timed_abort(self, run_id: str, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
        roots = {"client": proc.pid, **(self.temporal.pids() if self.temporal else {})}
        before = {n: cpu_seconds(p) for n, p in roots.items()}
        load = os.getloadavg()[0]
        peaks = Peaks(roots)
        peaks.start()
        started = time.perf_counter()
        ab = subprocess.run(
            [*scale_upgrader(), "abort", run_id, "--reason", "bench", "--wait", "0"],
            capture_output=True,
            text=True,
            env={**os.environ, **self.full_env()},
            cwd=self.cwd(),
            timeout=120,
        )
        abort_cmd = time.perf_counter() - started
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        peaks.done.set()
        peaks.join()
        after = {n: cpu_seconds(p) for n, p in roots.items() if n != "client"}
        # the client's CPU over the interval: its total (wait4) less what it had used before the abort
        after["client"] = usage.ru_utime + usage.ru_stime
        out = (self.scale.work / f"gated-{'temporal' if self.temporal else 'local'}.out").read_text()
        return {
            "seconds": round(wall, 3),
            "abort_command_s": round(abort_cmd, 3),
            "abort_exit": ab.returncode,
            "cpu_s": round(after["client"] - before["client"], 3),
            # the run ends in "aborted": exit 0 is not expected; 'ok' is the hosts' state (problems)
            "exit": 0 if ab.returncode == 0 else ab.returncode,
            "run_exit": proc.returncode,
            "peak_pss_mb": round(peaks.peak["client"], 1),
            "peak_threads": 0,
            "peak_fds": 0,
            "peak_processes": 0,
            "load_avg_1m": round(load, 2),
            "processes": {
                n: {"cpu_s": round(after[n] - before[n], 3), "peak_pss_mb": round(peaks.peak[n], 1)}
                for n in roots
                if n != "client"
            },
            "run_id": run_id,
            "stdout": out[-3000:],
            "stderr": ab.stdout[-500:] + ab.stderr[-500:],
        }

    @staticmethod
    def _new_journal(state: Path, known: set[Path], proc: subprocess.Popen[bytes]) -> Path:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"gated apply exited {proc.returncode} before it started a run")
            for d in (state / "runs").glob("*") if (state / "runs").exists() else []:
                if d not in known and (d / "journal.jsonl").exists():
                    return d / "journal.jsonl"
            time.sleep(0.2)
        raise RuntimeError("gated apply started no run within 300 s")

    @staticmethod
    def _wait_gate(journal: Path, gate: str, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            for line in journal.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("event") == "gate-wait" and rec.get("gate") == gate:
                    return
            if proc.poll() is not None:
                raise RuntimeError(f"gated apply exited {proc.returncode} before gate {gate}")
            time.sleep(0.2)
        raise RuntimeError(f"gated apply never reached gate {gate}")


def scale_from() -> str:
    import scale

    return scale.FROM


def scale_upgrader() -> list[str]:
    import scale

    return scale.UPGRADER


def run(scale_obj: Any, extra: Any, engines: list[str], rounds: int, args: Any, save: Any = None) -> dict[str, Any]:
    """Interleaved rounds; returns {"rounds": [{engine: {step: result}}], "ratios": …}; ``save(out)`` after
    each round, so a run cut short keeps the rounds it finished."""
    import scale as sc

    eng = Engines(scale_obj, extra, args)
    hosts = [*scale_obj.hosts, extra]
    out: dict[str, Any] = {
        "hosts": scale_obj.n,
        "gate_host": extra.name,
        "parallel": scale_obj.parallel,
        "activities_per_second": args.activities_per_second,
        "worker_parallel": args.worker_parallel or args.hosts_per_dc,
        "rounds": [],
    }
    temporal = None
    if "temporal" in engines:
        temporal = Temporal(
            scale_obj.work, eng.inventory, scale_obj.state, eng.artifacts, ["ny5", "ch2", GATE_DC], args
        )
    try:
        if temporal:
            temporal.start(eng.env, eng.cwd())
        for r in range(rounds):
            row: dict[str, Any] = {}
            for engine in engines:
                eng.temporal = temporal if engine == "temporal" else None
                bl.set_version(hosts, "feedhandler", sc.TO, sc.PORT)  # baseline everywhere, no lock (untimed)
                steps: dict[str, Any] = {}
                steps["apply"] = sc.step(scale_obj, f"r{r} {engine} apply", lambda e=engine: eng.apply(e), sc.FROM)
                if not steps["apply"]["ok"]:
                    scale_obj.set_from()
                steps["rollback-cmd"] = sc.step(
                    scale_obj, f"r{r} {engine} rollback", lambda e=engine: eng.rollback_cmd(e), sc.TO
                )
                bl.set_version(hosts, "feedhandler", sc.TO, sc.PORT)
                steps["abort"] = sc.step(scale_obj, f"r{r} {engine} abort", lambda e=engine: eng.abort(e), sc.TO)
                row[engine] = steps
            out["rounds"].append(row)
            out["ratios"] = ratios(out)
            if save:
                save(out)
    finally:
        if temporal:
            temporal.stop()
    return out


def ratios(out: dict[str, Any]) -> dict[str, Any]:
    """temporal/local wall time per step: per round, and of the medians over the rounds."""
    import statistics

    res: dict[str, Any] = {}
    for stepname in ("apply", "abort", "rollback-cmd"):
        pairs = [
            (r["local"][stepname], r["temporal"][stepname]) for r in out["rounds"] if "local" in r and "temporal" in r
        ]
        ok = [(a["seconds"], b["seconds"]) for a, b in pairs if a.get("ok") and b.get("ok")]
        if not ok:
            continue
        local = statistics.median(a for a, _ in ok)
        temporal = statistics.median(b for _, b in ok)
        res[stepname] = {
            "local_s": [a for a, _ in ok],
            "temporal_s": [b for _, b in ok],
            "ratio_per_round": [round(b / a, 2) for a, b in ok],
            "ratio_of_medians": round(temporal / local, 2),
            "goal": 1.3 if stepname != "rollback-cmd" else None,
        }
    return res


def render(result: dict[str, Any]) -> str:
    lines = [
        f"# bench/scale.py --engine — {result['meta']['date']}",
        "",
        f"code: `{result['meta']['git_start']}` … `{result['meta'].get('git_end', '')}`",
        "",
    ]
    for size, r in result["engines"].items():
        lines += [
            f"## {size} hosts (+ gate host {r['gate_host']}); client --parallel {r['parallel']}, "
            f"worker --parallel {r['worker_parallel']}, --activities-per-second {r['activities_per_second']}",
            "",
            "| round | engine | step | wall s | client CPU s | client peak PSS MB | control CPU s / PSS MB | "
            "dc workers CPU s / PSS MB | server CPU s / PSS MB | load | ok |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for i, row in enumerate(r["rounds"]):
            for engine, steps in row.items():
                for stepname, m in steps.items():
                    p = m.get("processes", {})
                    dcs = [v for k, v in p.items() if k.startswith("worker-")]

                    def cell(v: dict[str, Any] | None) -> str:
                        return f"{v['cpu_s']:.2f} / {v['peak_pss_mb']:.0f}" if v else "—"

                    dc_cell = (
                        f"{sum(v['cpu_s'] for v in dcs):.2f} / {sum(v['peak_pss_mb'] for v in dcs):.0f}" if dcs else "—"
                    )
                    lines.append(
                        f"| {i} | {engine} | {stepname} | {m['seconds']:.2f} | {m['cpu_s']:.2f} | "
                        f"{m['peak_pss_mb']:.0f} | {cell(p.get('control'))} | {dc_cell} | {cell(p.get('server'))} | "
                        f"{m['load_avg_1m']} | {'yes' if m['ok'] else 'NO'} |"
                    )
        lines += ["", "### temporal / local", "", "```json", json.dumps(r.get("ratios", {}), indent=2), "```", ""]
    return "\n".join(lines)
