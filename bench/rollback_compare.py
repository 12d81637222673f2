"""Benchmark: emergency rollback of feedhandler 3.1.0 → 3.0.0 on every lab host, upgrader vs Ansible vs pyinfra
vs the machine floor, in one run of interleaved trials.

    .venv/bin/python bench/rollback_compare.py [--rounds 5] [--warmup 1] [--tools upgrader,ansible-linear,...]

Needs the lab up (16 hosts: `UPGRADER_LAB_HOSTS_PER_DC=8 .venv/bin/python -m lab up`) and the benchmark's
own venv with ansible-core and pyinfra (see bench/README.md).  Each trial starts from every host on 3.1.0
(flipped back out of band through lxc-attach, untimed) and ends with every host checked on 3.0.0.  A round
runs each tool once, in an order rotated from round to round.  Writes bench/results/rollback_compare.json
and .md, and prints a table: median and spread per tool, and upgrader's ratios against the others.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import benchlib as bl

COMPONENT, FROM, TO, PORT = "feedhandler", "3.1.0", "3.0.0", 9101
TOOLS = ("upgrader", "ansible-linear", "ansible-free", "pyinfra", "floor")
# diagnostic, not in the default set: upgrader with its playbook's check interval cut to 50 ms (retries ×5)
EXTRA_TOOLS = ("upgrader-poll50",)
GOALS = {"ansible": 4.5, "pyinfra": 1.25, "floor": 1.3}  # upgrader ≥4.5× and ≥1.25× faster; ≤1.3× the floor


# ------------------------------------------------------------------ the tools
class Bench:
    def __init__(self, hosts: list[bl.LabHost], work: Path, poll: float, floor_poll: float) -> None:
        self.hosts = hosts
        self.work = work
        self.poll = poll
        self.floor_poll = floor_poll
        self.state = work / "upgrader-state"
        self.ansible_inventory = self._ansible_inventory()
        self.pyinfra_inventory = self._pyinfra_inventory()
        self.journals: list[dict[str, Any]] = []  # one per upgrader trial, for the profile

    def _ansible_inventory(self) -> Path:
        path = self.work / "ansible-inventory.ini"
        lines = [
            "[feedhandler]",
            *(h.name for h in self.hosts),
            "",
            "[feedhandler:vars]",
            f"ansible_ssh_common_args=-F {bl.SSH_CONFIG}",
        ]
        path.write_text("\n".join(lines) + "\n")
        return path

    def _pyinfra_inventory(self) -> Path:
        path = self.work / "pyinfra_inventory.py"
        entries = [
            (
                h.name,
                {
                    "ssh_hostname": h.address,
                    "ssh_user": "vagrant",
                    "ssh_key": str(h.key),
                    "ssh_known_hosts_file": str(bl.KNOWN_HOSTS),
                    "ssh_strict_host_key_checking": "yes",
                    "ssh_config_file": str(bl.SSH_CONFIG),
                },
            )
            for h in self.hosts
        ]
        path.write_text(f"feedhandler = {entries!r}\n")
        return path

    def run(self, tool: str, trial: str) -> bl.Timed:
        return getattr(self, tool.replace("-", "_"))(trial)

    def upgrader(self, trial: str, *extra: str) -> bl.Timed:
        env = {"UPGRADER_STATE_DIR": str(self.state), "UPGRADER_OPERATOR": "bench"}
        launched = time.time()
        res = bl.timed_run(
            [
                str(bl.REPO / ".venv" / "bin" / "upgrader"),
                "rollback",
                COMPONENT,
                "-i",
                "inventories/vagrant.yml",
                "--reason",
                "bench",
                "--yes",
                "--log-format",
                "plain",
                *extra,
            ],
            env=env,
        )
        if res.code == 0 and not extra:
            self.journals.append({"launched": launched, "seconds": res.seconds, "entries": bl.read_journal(self.state)})
        return res

    def upgrader_poll50(self, trial: str) -> bl.Timed:
        """Diagnostic: the same rollback with the committed playbook's check interval cut to 50 ms."""
        path = self.work / "feedhandler-poll50.yml"
        if not path.exists():
            import yaml

            data = yaml.safe_load((bl.REPO / "playbooks" / f"{COMPONENT}-{FROM}.yml").read_text())
            for check in data["checks"]:
                check["retries"] = check.get("retries", 0) * 5
                check["interval"] = "50ms"
            path.write_text(yaml.safe_dump(data, sort_keys=False))
        return self.upgrader(trial, "--playbook", str(path))

    def _ansible(self, trial: str, strategy: str) -> bl.Timed:
        control = Path(tempfile.mkdtemp(prefix="cp-", dir="/tmp"))  # short path: unix socket names are limited
        env = {
            "ANSIBLE_CONFIG": str(bl.BENCH / "ansible" / "ansible.cfg"),
            "ANSIBLE_STRATEGY": strategy,
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control),
            "ANSIBLE_LOCAL_TEMP": str(self.work / "ansible-tmp"),
            "ANSIBLE_HOME": str(self.work / "ansible-home"),
            "ANSIBLE_NOCOLOR": "1",
        }
        try:
            return bl.timed_run(
                [
                    str(bl.BENCH_VENV / "bin" / "ansible-playbook"),
                    "-i",
                    str(self.ansible_inventory),
                    str(bl.BENCH / "ansible" / "rollback.yml"),
                    "-e",
                    f"to={TO} poll_interval={self.poll}",
                ],
                env=env,
            )
        finally:
            close_masters(control)  # every trial starts cold, like the other tools

    def ansible_linear(self, trial: str) -> bl.Timed:
        return self._ansible(trial, "linear")

    def ansible_free(self, trial: str) -> bl.Timed:
        return self._ansible(trial, "free")

    def pyinfra(self, trial: str) -> bl.Timed:
        return bl.timed_run(
            [
                str(bl.BENCH_VENV / "bin" / "pyinfra"),
                str(self.pyinfra_inventory),
                str(bl.BENCH / "pyinfra" / "rollback_deploy.py"),
                "-y",
                "--parallel",
                str(len(self.hosts)),
                "--no-wait",
                "--data",
                f"to={TO}",
                "--data",
                f"poll_interval={self.poll}",
            ],
            cwd=self.work,
        )

    def floor(self, trial: str) -> bl.Timed:
        script = bl.floor_script()
        argv = [
            [
                "lxc-attach",
                "-n",
                h.container,
                "--clear-env",
                "--set-var",
                f"PATH={bl.GUEST_PATH}",
                "--",
                "/bin/bash",
                "-c",
                script,
                "rollback",
                COMPONENT,
                TO,
                str(PORT),
                str(self.floor_poll),
            ]
            for h in self.hosts
        ]
        started = time.perf_counter()
        procs = [subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in argv]
        outs = [p.communicate(timeout=60) for p in procs]
        seconds = time.perf_counter() - started
        code = max(p.returncode for p in procs)
        return bl.Timed(seconds, code, "".join(o for o, _ in outs), "".join(e for _, e in outs))


def close_masters(control: Path) -> None:
    for sock in control.glob("*"):
        subprocess.run(
            ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"], capture_output=True, timeout=10, check=False
        )
    shutil.rmtree(control, ignore_errors=True)


# ------------------------------------------------------------------ setup
def initial_state(hosts: list[bl.LabHost], work: Path) -> None:
    """Baseline everywhere, then a real `upgrader apply` to 3.1.0: staged markers and previous-release links."""
    bl.log("lab reset to the baseline, then upgrader apply feedhandler 3.1.0 (setup, untimed)")
    subprocess.run([str(bl.PROJECT_PYTHON), "-m", "lab", "reset"], cwd=bl.REPO, check=True)
    pb = bl.lab_playbook(
        work / "feedhandler-3.1.0.yml",
        COMPONENT,
        FROM,
        canary={"bake": "1s"},
        rollout={"batch": "25%", "max_in_flight_per_datacenter": 4},
    )
    env = {
        "UPGRADER_STATE_DIR": str(work / "setup-state"),
        "UPGRADER_ARTIFACTS": str(bl.ARTIFACTS),
        "UPGRADER_OPERATOR": "bench",
    }
    res = bl.timed_run(
        [
            str(bl.REPO / ".venv" / "bin" / "upgrader"),
            "apply",
            str(pb),
            "-i",
            str(bl.INVENTORY),
            "--yes",
            *bl.WEEKEND,
            "--log-format",
            "plain",
        ],
        env=env,
    )
    if res.code != 0:
        raise SystemExit(f"setup apply failed (exit {res.code}):\n{res.stdout}\n{res.stderr}")


def preflight(tools: list[str]) -> None:
    missing = [p for p in (bl.INVENTORY, bl.SSH_CONFIG, bl.KNOWN_HOSTS) if not p.exists()]
    if missing:
        raise SystemExit(
            f"lab not up ({', '.join(map(str, missing))} missing): "
            "UPGRADER_LAB_HOSTS_PER_DC=8 .venv/bin/python -m lab up"
        )
    for tool, exe in (("ansible", "ansible-playbook"), ("pyinfra", "pyinfra")):
        if any(t.startswith(tool) for t in tools) and not (bl.BENCH_VENV / "bin" / exe).exists():
            raise SystemExit(f"{bl.BENCH_VENV}/bin/{exe} missing: see bench/README.md (bench venv)")


# ------------------------------------------------------------------ trials
def trial(bench: Bench, tool: str, label: str) -> dict[str, Any]:
    bl.set_version(bench.hosts, COMPONENT, FROM, PORT)
    res = bench.run(tool, label)
    problems = bl.check_versions(bench.hosts, COMPONENT, TO, PORT)
    ok = res.code == 0 and not problems
    bl.log(
        f"{label:<10} {tool:<15} {res.seconds:7.3f} s  exit {res.code}"
        + ("" if ok else f"  FAILED: {problems or (res.stderr or res.stdout)[-800:]}")
    )
    return {
        "tool": tool,
        "trial": label,
        "seconds": round(res.seconds, 4),
        "exit": res.code,
        "ok": ok,
        "problems": problems,
        "output_tail": "" if ok else (res.stdout + res.stderr)[-3000:],
    }


def run_trials(bench: Bench, tools: list[str], rounds: int, warmup: int) -> list[dict[str, Any]]:
    records = []
    for w in range(warmup):
        for tool in tools:
            trial(bench, tool, f"warmup{w + 1}")
    bench.journals.clear()
    for r in range(rounds):
        for tool in bl.rotate(tools, r):
            records.append(trial(bench, tool, f"round{r + 1}"))
    return records


# ------------------------------------------------------------------ results
def summarize(records: list[dict[str, Any]], tools: list[str]) -> dict[str, Any]:
    tools_out: dict[str, Any] = {}
    for tool in tools:
        good = [r["seconds"] for r in records if r["tool"] == tool and r["ok"]]
        failed = sum(1 for r in records if r["tool"] == tool and not r["ok"])
        tools_out[tool] = {**(bl.summary(good) if good else {}), "seconds": good, "failed_trials": failed}
    ansible = [t for t in tools if t.startswith("ansible") and tools_out[t].get("median")]
    best_ansible = min(ansible, key=lambda t: tools_out[t]["median"]) if ansible else None
    ratios: dict[str, Any] = {}
    up = tools_out.get("upgrader", {}).get("median")
    for key, tool in (("ansible", best_ansible), ("pyinfra", "pyinfra"), ("floor", "floor")):
        other = tools_out.get(tool or "", {}).get("median")
        if not up or not other:
            continue
        if key == "floor":
            value = up / other  # upgrader's time as a multiple of the floor's
            ratios[key] = {
                "tool": tool,
                "upgrader_over_floor": round(value, 3),
                "goal": f"<= {GOALS[key]}",
                "met": value <= GOALS[key],
            }
        else:
            value = other / up  # how many times faster upgrader is
            ratios[key] = {
                "tool": tool,
                "speedup": round(value, 3),
                "goal": f">= {GOALS[key]}",
                "met": value >= GOALS[key],
            }
    return {"tools": tools_out, "best_ansible": best_ansible, "ratios": ratios}


def table(summary: dict[str, Any]) -> str:
    rows = ["| tool | median s | min–max s | trials | failed |", "|---|---:|---:|---:|---:|"]
    for tool, s in summary["tools"].items():
        if s.get("median") is None:
            rows.append(f"| {tool} | — | — | 0 | {s['failed_trials']} |")
            continue
        rows.append(f"| {tool} | {s['median']:.3f} | {s['min']:.3f}–{s['max']:.3f} | {s['n']} | {s['failed_trials']} |")
    rows += ["", "| ratio (medians) | value | goal | met |", "|---|---:|---:|---|"]
    for key, r in summary["ratios"].items():
        if key == "floor":
            rows.append(
                f"| upgrader / floor | {r['upgrader_over_floor']:.2f}× | {r['goal']} | {'yes' if r['met'] else 'NO'} |"
            )
        else:
            rows.append(
                f"| {r['tool']} / upgrader | {r['speedup']:.2f}× | {r['goal']} | {'yes' if r['met'] else 'NO'} |"
            )
    return "\n".join(rows)


# ------------------------------------------------------------------ where upgrader's time goes
def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def journal_profile(journals: list[dict[str, Any]], interval: float) -> dict[str, Any]:
    """Split each upgrader trial's wall time using its run journal (controller clock, ms resolution)."""
    parts: dict[str, list[float]] = {
        k: []
        for k in (
            "startup_to_run_start",
            "run_start_to_first_host",
            "host_span_max",
            "host_span_median",
            "agent_ops_median",
            "transport_median",
            "rollback_op_median",
            "retry_sleep_median",
            "after_last_host",
            "wall",
        )
    }
    attempts: dict[str, list[int]] = {}
    for j in journals:
        es = j["entries"]
        start = next(_ts(e["at"]) for e in es if e["event"] == "run-start")
        begins = {e["host"]: _ts(e["at"]) for e in es if e["event"] == "host-begin"}
        ends = {e["host"]: e for e in es if e["event"] == "host-end"}
        spans, agents, transports, backs, sleeps = [], [], [], [], []
        for host, b in begins.items():
            e = ends[host]
            span = _ts(e["at"]) - b
            ops = e.get("ops", [])
            agent = sum(o.get("seconds", 0.0) for o in ops)
            back = next((o for o in ops if o.get("op") == "rollback"), {})
            spans.append(span)
            agents.append(agent)
            transports.append(span - agent)
            backs.append(back.get("seconds", 0.0))
            sleep = 0.0
            for c in back.get("checks", []):
                attempts.setdefault(c["check"], []).append(c["attempts"])
                sleep += (c["attempts"] - 1) * interval
            sleeps.append(sleep)
        parts["startup_to_run_start"].append(start - j["launched"])
        parts["run_start_to_first_host"].append(min(begins.values()) - start)
        parts["host_span_max"].append(max(spans))
        parts["host_span_median"].append(statistics.median(spans))
        parts["agent_ops_median"].append(statistics.median(agents))
        parts["transport_median"].append(statistics.median(transports))
        parts["rollback_op_median"].append(statistics.median(backs))
        parts["retry_sleep_median"].append(statistics.median(sleeps))
        parts["after_last_host"].append(j["launched"] + j["seconds"] - max(_ts(e["at"]) for e in ends.values()))
        parts["wall"].append(j["seconds"])
    return {
        "seconds": {k: bl.summary(v) for k, v in parts.items() if v},
        "check_attempts": {
            k: {"min": min(v), "max": max(v), "mean": round(sum(v) / len(v), 2)} for k, v in attempts.items()
        },
    }


PROBE = r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from upgrader import agent
from upgrader.engine.endpoints import endpoints
from upgrader.engine.pool import Pool
from upgrader.loading.inputs import load_inventory
inv = load_inventory(Path(sys.argv[1]))
pool = Pool(endpoints(inv.model, inv.path))
hosts = list(endpoints(inv.model, inv.path))
program = {"component": "feedhandler", "root": "/opt/feedhandler", "run": None,
           "ops": [{"op": "facts", "service": None, "version_check": None, "journal_lines": 0}]}
def timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t
out = {}
def each(fn):
    t = time.perf_counter(); per = pool.each(hosts, fn); wall = time.perf_counter() - t
    bad = [h for h, v in per.items() if isinstance(v, Exception)]
    if bad: raise SystemExit(f"probe failed on {bad}: {per[bad[0]]}")
    return {"wall": round(wall, 4), "per_host_median": round(sorted(per.values())[len(per) // 2], 4)}
out["connect_and_true"] = each(lambda h: timed(lambda: pool[h].run(["true"], timeout=10)))
out["true_reused"] = each(lambda h: timed(lambda: pool[h].run(["true"], timeout=10)))
out["sudo_true_reused"] = each(lambda h: timed(lambda: pool[h].run(["true"], sudo=True, timeout=10)))
out["sudo_python3_pass"] = each(lambda h: timed(lambda: pool[h].run(["python3", "-c", "pass"], sudo=True, timeout=10)))
def agent_facts(h):  # as the engine starts an agent: serving, its source and the program on stdin
    stream = pool[h].stream(agent.serving_command(), sudo=True)
    try:
        answer = stream.exchange(agent.serving_input(program), until=agent.END, timeout=10)
    finally:
        stream.close()
    if not answer.stdout.rstrip().endswith(agent.END + "0"):
        raise SystemExit(f"agent facts failed on {h}: {answer.stdout[-300:]}")
out["sudo_python3_agent_facts"] = each(lambda h: timed(lambda: agent_facts(h)))
pool.close()
print(json.dumps(out))
"""


def startup_profile() -> dict[str, Any]:
    """The controller side before any host is contacted: interpreter, imports, argument parsing."""
    py = str(bl.PROJECT_PYTHON)
    samples: dict[str, list[float]] = {
        "python_bare": [],
        "import_cli_and_rollback": [],
        "import_fabric": [],
        "upgrader_rollback_help": [],
    }
    for _ in range(5):
        samples["python_bare"].append(bl.timed_run([py, "-c", "pass"]).seconds)
        samples["import_cli_and_rollback"].append(
            bl.timed_run([py, "-c", "import upgrader.cli.main, upgrader.commands.rollback"]).seconds
        )
        samples["import_fabric"].append(bl.timed_run([py, "-c", "import upgrader.transport.fabric_adapter"]).seconds)
        samples["upgrader_rollback_help"].append(
            bl.timed_run([str(bl.REPO / ".venv" / "bin" / "upgrader"), "rollback", "--help"]).seconds
        )
    imports = subprocess.run(
        [
            py,
            "-X",
            "importtime",
            "-c",
            "import upgrader.cli.main, upgrader.commands.rollback, upgrader.transport.fabric_adapter",
        ],
        capture_output=True,
        text=True,
        cwd=bl.REPO,
    )
    top = []
    for line in imports.stderr.splitlines():
        fields = line.split("|")
        if len(fields) == 3 and fields[1].strip().isdigit():
            top.append((int(fields[1].strip()), fields[2].rstrip()))
    roots = sorted((t for t in top if not t[1].startswith("    ")), reverse=True)[:12]
    return {
        "seconds": {k: bl.summary(v) for k, v in samples.items()},
        "top_level_imports_cumulative_ms": [{"module": m.strip(), "ms": round(us / 1000, 1)} for us, m in roots],
    }


def transport_profile() -> dict[str, Any]:
    """Connection setup, sudo, the hosts' python start and the agent's start, through upgrader's transport."""
    proc = subprocess.run(
        [str(bl.PROJECT_PYTHON), "-c", PROBE, str(bl.INVENTORY)],
        capture_output=True,
        text=True,
        cwd=bl.REPO,
        timeout=120,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return json.loads(proc.stdout)


# ------------------------------------------------------------------ main
def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [
        "# Emergency rollback: upgrader vs Ansible vs pyinfra vs the machine floor",
        "",
        f"{meta['component']} {meta['from']} → {meta['to']} on {meta['hosts']} lab hosts, {meta['rounds']} interleaved "
        f"rounds (order rotated, {meta['warmup']} warm-up round discarded), {meta['date']}. Wall time of the whole "
        "command; every trial starts with all hosts on 3.1.0 and is checked afterwards (current link and /health on "
        "3.0.0 on every host).",
        "",
        table(result["summary"]),
        "",
        f"Health poll interval: {meta['poll_interval']} s for Ansible and pyinfra (upgrader's playbook checks use "
        f"250 ms), {meta['floor_poll_interval']} s for the floor. Versions: {meta['versions']}; code: "
        f"{meta.get('git_start', '?')} → {meta.get('git_end', '?')} (git describe at start and end).",
        "",
        "Repeat: `.venv/bin/python bench/rollback_compare.py` (see bench/README.md).",
    ]
    prof = result.get("profile")
    if prof:
        lines += ["", "## Where upgrader's time goes (medians over the timed upgrader trials)", ""]
        lines += profile_table(prof)
    return "\n".join(lines) + "\n"


def profile_table(prof: dict[str, Any]) -> list[str]:
    j = prof["journal"]["seconds"]
    st = prof["startup"]["seconds"]
    tr = prof.get("transport", {})
    rows = ["| part | seconds |", "|---|---:|"]
    for key, label in (
        ("wall", "whole command"),
        ("startup_to_run_start", "process start → journal run-start (interpreter, imports, load)"),
        ("run_start_to_first_host", "run-start → first host program sent"),
        ("host_span_median", "one host: program sent → result back"),
        ("transport_median", "… of which transport: connect, auth, sudo, python + agent start"),
        ("agent_ops_median", "… of which the agent's ops (lock, rollback, release)"),
        ("rollback_op_median", "… … the rollback op: stop, flip, start, verify checks"),
        ("retry_sleep_median", "… … … sleeping between failed check attempts"),
        ("after_last_host", "last host back → process exit"),
    ):
        if key in j:
            rows.append(f"| {label} | {j[key]['median']:.3f} |")
    for key, label in (
        ("import_cli_and_rollback", "import the CLI + rollback command (fresh interpreter)"),
        ("upgrader_rollback_help", "`upgrader rollback --help`"),
    ):
        rows.append(f"| {label} | {st[key]['median']:.3f} |")
    for key, label in (
        ("connect_and_true", "probe: 16 new connections + `true`, wall"),
        ("true_reused", "probe: `true` on open connections, wall"),
        ("sudo_python3_pass", "probe: `sudo python3 -c pass`, wall"),
        ("sudo_python3_agent_facts", "probe: `sudo` agent with one facts op, wall"),
    ):
        if key in tr:
            rows.append(f"| {label} | {tr[key]['wall']:.3f} |")
    attempts = prof["journal"].get("check_attempts", {})
    if attempts:
        rows += [
            "",
            "Verify check attempts per host (min/mean/max): "
            + "; ".join(f"{k} {v['min']}/{v['mean']}/{v['max']}" for k, v in attempts.items()),
        ]
    return rows


def versions() -> dict[str, str]:
    out = {}
    for name, argv in (
        (
            "ansible-core",
            [str(bl.BENCH_VENV / "bin" / "python"), "-c", "import ansible.release as r; print(r.__version__)"],
        ),
        (
            "pyinfra",
            [
                str(bl.BENCH_VENV / "bin" / "python"),
                "-c",
                "import importlib.metadata as m; print(m.version('pyinfra'))",
            ],
        ),
        ("upgrader", [str(bl.PROJECT_PYTHON), "-c", "import importlib.metadata as m; print(m.version('upgrader'))"]),
    ):
        proc = subprocess.run(argv, capture_output=True, text=True)
        out[name] = proc.stdout.strip() or "?"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (caches, bytecode)")
    p.add_argument(
        "--tools", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS + EXTRA_TOOLS)}"
    )
    p.add_argument("--poll", type=float, default=0.25, help="health poll interval for Ansible and pyinfra")
    p.add_argument("--floor-poll", type=float, default=0.05, help="health poll interval for the floor")
    p.add_argument("--skip-setup", action="store_true", help="hosts already have 3.1.0 staged by upgrader")
    p.add_argument("--no-profile", action="store_true", help="skip the breakdown of upgrader's time")
    p.add_argument("--out", type=Path, default=bl.RESULTS / "rollback_compare.json")
    p.add_argument("--render", action="store_true", help="only rewrite the .md from an existing --out JSON")
    args = p.parse_args(argv)
    if args.render:
        args.out.with_suffix(".md").write_text(markdown(json.loads(args.out.read_text())))
        return 0
    tools = [t for t in args.tools.split(",") if t]
    unknown = set(tools) - set(TOOLS) - set(EXTRA_TOOLS)
    if unknown:
        p.error(f"unknown tools: {', '.join(sorted(unknown))}")
    preflight(tools)
    git_start = bl.git_state()
    hosts = bl.lab_hosts()
    if len(hosts) != 16:
        bl.log(f"note: the lab has {len(hosts)} hosts (the benchmark's reference setup is 16)")
    work = Path(tempfile.mkdtemp(prefix="rollback-bench-"))
    try:
        if not args.skip_setup:
            initial_state(hosts, work)
        bench = Bench(hosts, work, args.poll, args.floor_poll)
        records = run_trials(bench, tools, args.rounds, args.warmup)
        summary = summarize(records, tools)
        result: dict[str, Any] = {
            "meta": {
                "component": COMPONENT,
                "from": FROM,
                "to": TO,
                "hosts": len(hosts),
                "rounds": args.rounds,
                "warmup": args.warmup,
                "tools": tools,
                "poll_interval": args.poll,
                "floor_poll_interval": args.floor_poll,
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "versions": versions(),
                "python": sys.version.split()[0],
                "git_start": git_start,
                "git_end": bl.git_state(),
            },
            "summary": summary,
            "trials": records,
        }
        if not args.no_profile and "upgrader" in tools and bench.journals:
            # the agent polls cheap probes (http, tcp, log...) every FAST_POLL within a check's window
            from upgrader.agent.checks import FAST_POLL

            result["profile"] = {
                "journal": journal_profile(bench.journals, min(0.25, FAST_POLL)),
                "startup": startup_profile(),
                "transport": transport_profile(),
            }
        if result["meta"]["git_start"] != result["meta"]["git_end"] or "dirty" in git_start:
            bl.log(
                f"WARNING: the code changed or was uncommitted during the run ({git_start} → "
                f"{result['meta']['git_end']}): the numbers may mix versions"
            )
        bl.write_json(args.out, result)
        args.out.with_suffix(".md").write_text(markdown(result))
        print(table(summary))
        print(f"\nwrote {args.out} and {args.out.with_suffix('.md')}")
        return 0 if all(r["ok"] for r in records) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
