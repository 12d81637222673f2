"""Where the CPU of a 16-host emergency rollback goes: upgrader vs pyinfra vs the floor, host by host.

    .venv/bin/python -m lab scale-up --hosts-per-dc 8      # or more: the first 8 of each datacenter are used
    .venv/bin/python bench/rollback_cpu.py [--rounds 5] [--code /tmp/upg-head]

On this 2-core machine the controller, both jump hosts and all 16 hosts share the same cores, so a
rollback's wall time follows the CPU everything spends.  This bench measures that CPU instead of
guessing it:

* per tool (interleaved rounds, order rotated; before each trial every host is put on 3.1.0 out of
  band, after it every host is checked on 3.0.0): wall time, the controller's CPU (getrusage of the
  reaped tree), the CPU of the 16 host containers and of the 2 jump containers (their cgroups'
  cpuacct.usage), and the whole machine's busy CPU over the trial (/proc/stat);
* the pieces of one host's share, measured one at a time on an idle host (10 repetitions each) through
  upgrader's own transport and jump connection: the SSH handshake alone, + a session running `true`,
  + sudo, + `python3 -I -S -c pass`, + the agent started with an empty program; and, through
  lxc-attach without SSH, the agent's whole rollback program (lock, rollback, release) next to the
  floor's script on the same host.

Writes bench/results/rollback_cpu-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import benchlib as bl
import scale as sc

CGROUP = "/sys/fs/cgroup/cpuacct/lxc.payload.{}/cpuacct.usage"
TOOLS = ("upgrader", "pyinfra", "floor")


def cgroup_cpu(container: str) -> float:
    """Seconds of CPU the container has used (cgroup v1 cpuacct; v2 cpu.stat as a fallback)."""
    try:
        return int(Path(CGROUP.format(container)).read_text()) / 1e9
    except FileNotFoundError:
        stat = Path(f"/sys/fs/cgroup/lxc.payload.{container}/cpu.stat").read_text()
        return int(next(line.split()[1] for line in stat.splitlines() if line.startswith("usage_usec"))) / 1e6


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / ticks, sum(fields) / ticks


def trial(scale: sc.Scale, tool: str, jumps: list[str], settle: float = 1.5) -> dict[str, Any]:
    """Every host put on 3.1.0 and left ``settle`` s (the restarted apps settle), then ``tool``'s rollback."""
    scale.set_from()
    time.sleep(settle)
    hosts = [h.container for h in scale.hosts]
    before = {c: cgroup_cpu(c) for c in hosts + jumps}
    busy0, total0 = machine_busy()
    res = getattr(scale, f"rollback_{tool}")()
    busy1, total1 = machine_busy()
    after = {c: cgroup_cpu(c) for c in hosts + jumps}
    problems = scale.problems(sc.TO)
    return {
        "tool": tool,
        "seconds": res["seconds"],
        "exit": res["exit"],
        "ok": res["exit"] == 0 and not problems,
        "problems": len(problems),
        "controller_cpu_s": res["cpu_s"],
        "hosts_cpu_s": round(sum(after[c] - before[c] for c in hosts), 3),
        "jumps_cpu_s": round(sum(after[c] - before[c] for c in jumps), 3),
        "machine_busy_s": round(busy1 - busy0, 3),
        "machine_capacity_s": round(total1 - total0, 3),
        "peak_threads": res["peak_threads"],
        "peak_pss_mb": round(res["peak_pss_mb"], 1),
    }


# The pieces of one host's share, in a child process that imports the upgrader under test (--code).
PIECES = r"""
import json, resource, sys, time
from upgrader.commands import early
from upgrader.engine import remote
from upgrader.transport import fabric_transport
from upgrader.transport.base import Timeouts
from upgrader.transport.gateways import Gateways
record, host, container, jump, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
ep = early._endpoint(json.loads(open(record).read())["hosts"][host]["endpoint"])
t = Timeouts()
gw = Gateways(t)
def cg(c): return int(open("/sys/fs/cgroup/cpuacct/lxc.payload.%s/cpuacct.usage" % c).read()) / 1e6
def me(): r = resource.getrusage(resource.RUSAGE_SELF); return (r.ru_utime + r.ru_stime) * 1000
def connect():
    tr = fabric_transport(ep, t, gw); tr._open(); tr.close()
def run(argv, sudo):
    def go():
        tr = fabric_transport(ep, t, gw); r = tr.run(argv, sudo=sudo); assert r.ok, r; tr.close()
    return go
def agent():
    tr = fabric_transport(ep, t, gw); s = remote.Session(tr); remote.start(s); assert s._held(), "agent did not start"
    s.close(); tr.close()
out = {}
gw.link(ep.jump).ensure()
steps = (("ssh handshake", connect), ("+ session running true", run(["true"], False)), ("+ sudo", run(["true"], True)),
         ("+ python3 -I -S -c pass", run(["python3", "-I", "-S", "-c", "pass"], True)),
         ("+ agent, empty program (instead of python -c pass)", agent))
for name, fn in steps:
    fn()
    h0, j0, m0, w0 = cg(container), cg(jump), me(), time.perf_counter()
    for _ in range(n):
        fn()
    out[name] = {"host_ms": round((cg(container) - h0) / n, 1), "jump_ms": round((cg(jump) - j0) / n, 1),
                 "controller_ms": round((me() - m0) / n, 1), "wall_ms": round((time.perf_counter() - w0) / n * 1000, 1)}
gw.close()
print(json.dumps(out))
"""


def pieces(scale: sc.Scale, code: Path, repeat: int) -> dict[str, Any]:
    records = sorted(glob.glob(str(scale.state / "connections" / "*.json")))
    if not records:
        raise SystemExit("no connection record: the upgrader trials write it; run at least one round")
    host = scale.hosts[2]
    jump = f"ups-{host.dc}-jump"
    proc = subprocess.run(
        [str(bl.PROJECT_PYTHON), "-c", PIECES, records[-1], host.name, host.container, jump, str(repeat)],
        capture_output=True,
        text=True,
        cwd=code,
        check=True,
        env={**os.environ, "PYTHONPATH": str(code)},
    )
    return {"host": host.name, **json.loads(proc.stdout)}


def local(scale: sc.Scale, code: Path, repeat: int) -> dict[str, Any]:
    """The agent's rollback program and the floor's script on one idle host, through lxc-attach (no SSH)."""
    sys.path.insert(0, str(code))
    from upgrader import agent
    from upgrader.engine.rollback import rollback_program
    from upgrader.loading.inputs import load_playbook

    host = scale.hosts[2]
    floor = bl.floor_script()
    attach = ["lxc-attach", "-n", host.container, "--clear-env", "--set-var", f"PATH={bl.GUEST_PATH}", "--"]
    # the program `upgrader rollback` sends, from the engine's own builder
    spec = load_playbook(scale.playbook).model
    ops = rollback_program(spec, None, operator="bench", reason="bench", controller_id="bench:0")
    prog = {"component": sc.COMPONENT, "root": spec.install.root, "run": "bench-rollback-cpu", "ops": ops}

    def run_agent() -> None:
        done = subprocess.run(
            [*attach, *agent.serving_command()],
            input=agent.serving_input(prog) + "\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        if "@@upgrader-end 0" not in done.stdout:
            raise RuntimeError(f"agent rollback failed on {host.name}: {done.stdout[-400:]} {done.stderr[-400:]}")

    def run_floor() -> None:
        subprocess.run(
            [*attach, "/bin/bash", "-c", floor, "rollback", sc.COMPONENT, sc.TO, str(sc.PORT), "0.05"],
            check=True,
            timeout=60,
            capture_output=True,
        )

    out: dict[str, Any] = {"host": host.name}
    runs: dict[str, list[tuple[float, float]]] = {"agent": [], "floor": []}
    for _ in range(repeat):
        for name, fn in (("agent", run_agent), ("floor", run_floor)):
            bl.set_version([host], sc.COMPONENT, sc.FROM, sc.PORT)
            time.sleep(0.5)
            c0, w0 = cgroup_cpu(host.container), time.perf_counter()
            fn()
            runs[name].append(((cgroup_cpu(host.container) - c0) * 1000, (time.perf_counter() - w0) * 1000))
    for name, values in runs.items():
        out[name] = {
            "host_ms": round(statistics.median(v[0] for v in values), 1),
            "wall_ms": round(statistics.median(v[1] for v in values), 1),
        }
    return out


def _stats(trials: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(t[key] for t in trials), 3)


def render(result: dict[str, Any]) -> str:
    lines = [
        f"# bench/rollback_cpu.py — {result['meta']['started']}",
        "",
        f"code: `{result['meta']['code']}`; {result['meta']['rounds']} interleaved rounds, 16 hosts, "
        "2 jump hosts, 2 shared cores. Medians over the trials that left every host on 3.0.0.",
        "",
        "| tool | wall s | controller CPU s | 16 hosts' CPU s | per host ms | jump hosts' CPU s | machine busy s "
        "| of capacity s | ok trials |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for tool, row in result["tools"].items():
        lines.append(
            f"| {tool} | {row['seconds']} | {row['controller_cpu_s']} | {row['hosts_cpu_s']} | "
            f"{row['hosts_cpu_s'] / 16 * 1000:.0f} | {row['jumps_cpu_s']} | {row['machine_busy_s']} | "
            f"{row['machine_capacity_s']} | {row['ok']}/{row['trials']} |"
        )
    lines += [
        "",
        "One host's share, piece by piece (idle host, 10 repetitions each, upgrader's transport):",
        "",
        "| piece | host CPU ms | jump CPU ms | controller CPU ms | wall ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in result["pieces"].items():
        if isinstance(row, dict):
            lines.append(
                f"| {name} | {row['host_ms']} | {row['jump_ms']} | {row['controller_ms']} | {row['wall_ms']} |"
            )
    loc = result["local"]
    if "agent" in loc:
        lines += [
            "",
            f"Through lxc-attach on {loc['host']} (no SSH), median of {result['meta']['rounds']}: "
            "the agent's rollback program (python start, agent load, lock, rollback, release) "
            f"{loc['agent']['host_ms']} ms "
            f"of host CPU in {loc['agent']['wall_ms']} ms; the floor's script {loc['floor']['host_ms']} ms in "
            f"{loc['floor']['wall_ms']} ms.",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--code", type=Path, help="run upgrader from this tree (a git worktree of a commit)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    hosts, jump_addresses = sc.scale_hosts()
    code = (args.code or bl.REPO).resolve()
    sc.CODE["PYTHONPATH"] = str(code)
    sc.compile_upgrader(code)
    work = Path(f"/tmp/rollback-cpu-{os.getpid()}")
    scale = sc.Scale(sc.subset(hosts, 16), jump_addresses, work, None, 0.25, 0.05, None)
    jumps = [f"ups-{dc}-jump" for dc in jump_addresses]
    started = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        bl.set_version(scale.hosts, sc.COMPONENT, sc.TO, sc.PORT)
        setup = scale.apply()  # stages 3.1.0 with upgrader's records everywhere, and writes the connection record
        if setup["exit"] != 0:
            raise SystemExit(f"setup apply failed: {setup['stderr'][-800:]}")
        trials: list[dict[str, Any]] = []
        for r in range(args.rounds):
            for tool in bl.rotate(TOOLS, r):
                t = trial(scale, tool, jumps)
                bl.log(
                    f"round {r + 1} {tool:9} {t['seconds']:.3f} s  controller {t['controller_cpu_s']:.2f}  "
                    f"hosts {t['hosts_cpu_s']:.2f}  jumps {t['jumps_cpu_s']:.3f}  busy {t['machine_busy_s']:.2f}"
                    f"/{t['machine_capacity_s']:.2f}  {'ok' if t['ok'] else 'FAILED'}"
                )
                trials.append(t)
        tools = {}
        for tool in TOOLS:
            good = [t for t in trials if t["tool"] == tool and t["ok"]]
            tools[tool] = (
                {
                    k: _stats(good, k)
                    for k in (
                        "seconds",
                        "controller_cpu_s",
                        "hosts_cpu_s",
                        "jumps_cpu_s",
                        "machine_busy_s",
                        "machine_capacity_s",
                    )
                }
                if good
                else {}
            )
            tools[tool].update(ok=len(good), trials=sum(t["tool"] == tool for t in trials))
        meta = {
            "started": started,
            "code": sc.code_state(args.code),
            "rounds": args.rounds,
            "load_avg_1m_end": os.getloadavg()[0],
        }
        result = {
            "meta": meta,
            "tools": tools,
            "trials": trials,
            "pieces": pieces(scale, code, 10),
            "local": local(scale, code, args.rounds),
        }
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    out = args.out or bl.RESULTS / f"rollback_cpu-{started[:10]}.json"
    bl.write_json(out, result)
    out.with_suffix(".md").write_text(render(result))
    bl.log(f"wrote {out} and {out.with_suffix('.md')}")
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
