"""Benchmark: upgrader at 16, 64 and 256 hosts through 2 jump hosts; rollback against Ansible, pyinfra, the floor.

    .venv/bin/python -m lab scale-up --hosts-per-dc 128        # once: 256 hosts + 2 jump hosts (lab/scale.py)
    .venv/bin/python bench/scale.py [--sizes 16,64,256] [--tools ...] [--parallel N]

One run, same hosts (the first N/2 of each datacenter of inventories/scale.yml).  Per size:
`upgrader facts`, `upgrader apply` of feedhandler 3.1.0 (bake 0; from the baseline 3.0.0, it also
sets up the rollback), then the emergency rollback 3.1.0 → 3.0.0 by each tool: upgrader,
Ansible (ProxyJump, forks = hosts, pipelining, ControlPersist; bench/ansible), pyinfra
(--parallel = hosts; bench/pyinfra), the floor (the same flip, restart and health wait through
lxc-attach on all hosts at once, no SSH; bench/floor) and the SSH floor (the floor's script through
upgrader's transport with sudo, one SSH session per host and nothing else: the least an SSH tool
pays).  Before each rollback every host is flipped back to 3.1.0 out of band and checked; after it
every host is checked on 3.0.0 (`current` and /health, read inside the host: the controller has no
route to a datacenter host).  Every tool may
wait up to 20 s for /health on the rolled-back version: the floor's and pyinfra's health.sh deadline,
Ansible's 80 x 0.25 s, and upgrader's health check (80 x 250 ms, in the bench's playbook, which
`upgrader rollback` is given with --playbook).

Measured per command, over the tool's whole process tree (sampled every 0.2 s from /proc): wall time,
controller CPU seconds (getrusage of reaped children), peak PSS (sum over the tree; RSS for one
process), peak threads, peak open fds; handshake retries (upgrader's "retrying" warnings) and
connections refused (each jump host's sshd journal: "drop connection ... past MaxStartups" lines, or the
"exited MaxStartups throttling after …, N connections dropped" sums, whichever is larger).
The machine is shared: the 1-minute load average is recorded with every measurement.
Writes bench/results/scale-<date>.json and .md.

    .venv/bin/python -m lab scale-up --hosts-per-dc 129        # 128 measured + 1 gate host per datacenter
    .venv/bin/python bench/scale.py --engine local,temporal --sizes 256 [--rounds 2]

compares the engines instead (bench/scale_engines.py): apply, the run's own emergency rollback (abort at a
gate before the last phase) and `upgrader rollback`, each engine in turn on the same hosts, round after
round, against a Temporal dev server with a control worker and one worker process per datacenter.
Writes bench/results/scale-temporal-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import benchlib as bl
import yaml

COMPONENT, FROM, TO, PORT = "feedhandler", "3.1.0", "3.0.0", 9101
SCALE_INVENTORY = bl.REPO / "inventories" / "scale.yml"
SCALE_DIR = bl.REPO / ".lab" / "scale"
TOOLS = ("upgrader", "ansible", "pyinfra", "floor", "sshfloor")
GOALS = {256: {"ansible": 6.0, "pyinfra": 1.6, "floor": 2.0}, 16: {"ansible": 6.0, "pyinfra": 1.6, "floor": 1.5}}
UPGRADER = [str(bl.PROJECT_PYTHON), "-m", "upgrader"]
CODE: dict[str, str] = {}  # PYTHONPATH of the upgrader under test (--code: a git worktree of a commit)


@dataclass(frozen=True)
class Host(bl.LabHost):
    dc: str = ""
    jump: str = ""

    @property
    def container(self) -> str:
        return f"ups-{self.name}"


def scale_hosts() -> tuple[list[Host], dict[str, str]]:
    data = yaml.safe_load(SCALE_INVENTORY.read_text())
    key = (SCALE_INVENTORY.parent / data["defaults"]["ssh_key"]).resolve()
    hosts, jumps = [], {}
    for dc, d in data["datacenters"].items():
        jumps[dc] = d["jump"]["address"]
        hosts += [Host(name, h["address"], key, dc, d["jump"]["address"]) for name, h in d["hosts"].items()]
    return hosts, jumps


def subset(hosts: list[Host], size: int) -> list[Host]:
    per = size // 2
    return [h for dc in ("ny5", "ch2") for h in [x for x in hosts if x.dc == dc][:per]]


# ------------------------------------------------------------------ process-tree sampling
def _tree(root: int) -> list[int]:
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out, todo = [], [root]
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _proc(pid: int) -> tuple[int, int, int]:
    """(PSS bytes, threads, fds) of one process; zeros if it is gone."""
    try:
        pss = 0
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
                break
        threads = int(
            next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("Threads:")).split()[1]
        )
        return pss, threads, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration, ValueError):
        return 0, 0, 0


class TreeSampler(threading.Thread):
    def __init__(self, root: int, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.root, self.every = root, every
        self.peak = {"pss_mb": 0.0, "threads": 0, "fds": 0, "processes": 0}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            pids = _tree(self.root)
            rows = [_proc(p) for p in pids]
            self.peak = {
                "pss_mb": max(self.peak["pss_mb"], sum(r[0] for r in rows) / 2**20),
                "threads": max(self.peak["threads"], sum(r[1] for r in rows)),
                "fds": max(self.peak["fds"], sum(r[2] for r in rows)),
                "processes": max(self.peak["processes"], len(pids)),
            }
            self.done.wait(self.every)


def measured(
    argv: list[str], *, env: dict[str, str] | None = None, cwd: Path = bl.REPO, timeout: float = 900
) -> dict[str, Any]:
    """Run argv; wall, controller CPU of the whole (reaped) tree, peaks, output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    sampler = TreeSampler(proc.pid)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    wall = time.perf_counter() - started
    sampler.done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "seconds": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "exit": proc.returncode,
        "peak_pss_mb": round(sampler.peak["pss_mb"], 1),
        "peak_threads": sampler.peak["threads"],
        "peak_fds": sampler.peak["fds"],
        "peak_processes": sampler.peak["processes"],
        "load_avg_1m": round(load, 2),
        "stdout": out,
        "stderr": err,
    }


# ------------------------------------------------------------------ refusals on the jump hosts
def refused_since(since: float) -> int:
    """Connections each jump host's sshd dropped for MaxStartups since ``since`` (epoch seconds).

    Caveat: sshd writes the "N connections dropped" sum when throttling ends, i.e. at the next
    connection after it, which can fall in a later step than the drops (see refused_lines).
    """
    total = 0
    for jump in ("ny5-jump", "ch2-jump"):
        proc = subprocess.run(
            [
                "lxc-attach",
                "-n",
                f"ups-{jump}",
                "--clear-env",
                "--set-var",
                f"PATH={bl.GUEST_PATH}",
                "--",
                "journalctl",
                "-q",
                "-o",
                "cat",
                "--since",
                f"@{int(since) - 1}",
                "_COMM=sshd",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines = proc.stdout.splitlines()
        # sshd logs some drops one by one and sums them up when throttling ends: take the larger count
        each = sum(1 for line in lines if "past MaxStartups" in line)
        summed = sum(
            int(m.group(1))
            for line in lines
            if (
                m := re.search(
                    r"throttling after .*, (\d+) connections "
                    r"dropped",
                    line,
                )
            )
        )
        total += max(each, summed)
    return total


def refused_lines(since: float) -> int:
    """Only the per-connection "drop connection #N … past MaxStartups" lines since ``since``: correctly
    placed in time, but sshd does not log every drop one by one."""
    total = 0
    for jump in ("ny5-jump", "ch2-jump"):
        proc = subprocess.run(
            [
                "lxc-attach",
                "-n",
                f"ups-{jump}",
                "--clear-env",
                "--set-var",
                f"PATH={bl.GUEST_PATH}",
                "--",
                "journalctl",
                "-q",
                "-o",
                "cat",
                "--since",
                f"@{int(since) - 1}",
                "_COMM=sshd",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        total += sum(1 for line in proc.stdout.splitlines() if "past MaxStartups" in line)
    return total


# ------------------------------------------------------------------ the run
class Scale:
    def __init__(
        self,
        hosts: list[Host],
        jumps: dict[str, str],
        work: Path,
        parallel: int | None,
        poll: float,
        floor_poll: float,
        max_in_flight: int | None = None,
    ) -> None:
        self.hosts, self.jumps, self.work = hosts, jumps, work
        (work / "cm").mkdir(parents=True, exist_ok=True)
        self.n = len(hosts)
        self.parallel = parallel or self.n
        self.poll, self.floor_poll = poll, floor_poll
        self.inventory = self._inventory()
        self.ssh_config = self._ssh_config()
        self.pyinfra_ssh_config = self._ssh_config(proxy_command=True)
        self.state = work / "state"
        in_flight = min(max_in_flight or self.n, max(1, self.n // 2))  # per datacenter
        self.in_flight = in_flight
        # Every tool waits up to 20 s for /health on the rolled-back version (the floor's and pyinfra's
        # health.sh deadline, Ansible's 80 x 0.25 s): upgrader's checks get the same budget, 80 x 250 ms,
        # instead of the lab playbook's 3 s, which 256 app starts on 2 cores at load 70 can outlast.
        checks = [
            {
                "name": "health",
                "http": {"url": f"http://127.0.0.1:{PORT}/health", "status": 200, "body": '"status": "ok"'},
                "timeout": "1s",
                "retries": 80,
                "interval": "250ms",
            },
            {
                "name": "reports-version",
                "version": {"url": f"http://127.0.0.1:{PORT}/health"},
                "retries": 2,
                "interval": "250ms",
            },
        ]
        self.playbook = bl.lab_playbook(
            work / f"{COMPONENT}-{FROM}.yml",
            COMPONENT,
            FROM,
            canary={"bake": "0s"},
            rollout={"batch": "100%", "max_in_flight_per_datacenter": in_flight},
            checks=checks,
        )
        self.checks = checks

    def _inventory(self) -> Path:
        data = yaml.safe_load(SCALE_INVENTORY.read_text())
        names = {h.name for h in self.hosts}
        for d in data["datacenters"].values():
            d["hosts"] = {k: v for k, v in d["hosts"].items() if k in names}
        data["known_hosts"] = str(SCALE_DIR / "known_hosts")
        data["defaults"]["ssh_key"] = str(SCALE_DIR / "id_ed25519")
        data["name"] = f"scale-{self.n}"
        path = self.work / "inventory.yml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def _ssh_config(self, proxy_command: bool = False) -> Path:
        """OpenSSH config for the other tools, every jump hop multiplexed on one master per jump host.

        Ansible runs OpenSSH, so ``ProxyJump`` rides the jump's ControlMaster.  pyinfra runs paramiko,
        whose ``ProxyJump`` opens a new connection to the jump host for every host (refused past the
        jump's MaxStartups from 64 hosts on); with ``proxy_command`` its hosts go through
        ``ProxyCommand ssh -W``, which OpenSSH multiplexes on the same master: how an operator would
        run pyinfra through a bastion at this size.
        """
        key, known = SCALE_DIR / "id_ed25519", SCALE_DIR / "known_hosts"
        common = (
            f"  User vagrant\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n"
            "  StrictHostKeyChecking yes\n  ConnectTimeout 10\n  LogLevel ERROR\n"
        )
        text = ""
        for dc, address in self.jumps.items():
            subnet = next(h.address for h in self.hosts if h.dc == dc).rsplit(".", 1)[0]
            # the jump hop multiplexed too (ControlMaster on the bastion), as an operator's config would have it
            hop = (
                f"  ProxyCommand ssh -F {self.work / 'ssh_config'} -W %h:%p {dc}-jump\n"
                if proxy_command
                else f"  ProxyJump {dc}-jump\n"
            )
            text += (
                f"Host {dc}-jump\n  HostName {address}\n{common}  ControlMaster auto\n"
                f"  ControlPath {self.work}/cm/j-%C\n  ControlPersist 60s\n\n"
                f"Host {subnet}.*\n{hop}{common}\n"
            )
        path = self.work / ("ssh_config_proxycommand" if proxy_command else "ssh_config")
        path.write_text(text)
        return path

    # -- upgrader
    def upgrader(self, *args: str) -> dict[str, Any]:
        env = {
            "UPGRADER_STATE_DIR": str(self.state),
            "UPGRADER_OPERATOR": "bench",
            "UPGRADER_ARTIFACTS": str(bl.ARTIFACTS),
            **CODE,
        }
        # python -m puts the working directory first on sys.path: run from the tree under test
        return measured(
            [*UPGRADER, *args, "-i", str(self.inventory), "--parallel", str(self.parallel)],
            env=env,
            cwd=Path(CODE.get("PYTHONPATH", bl.REPO)),
        )

    def facts(self) -> dict[str, Any]:
        return self.upgrader("facts", str(self.playbook), "--out", str(self.work / "facts.json"))

    def apply(self) -> dict[str, Any]:
        return self.upgrader("apply", str(self.playbook), "--yes", *bl.WEEKEND, "--log-format", "plain")

    def rollback_upgrader(self) -> dict[str, Any]:
        # --playbook: the service and checks above (the hosts were put on 3.0.0 out of band, so no
        # definition recorded at install stands in for them)
        return self.upgrader(
            "rollback",
            COMPONENT,
            "--reason",
            "bench",
            "--yes",
            "--log-format",
            "plain",
            "--playbook",
            str(self.playbook),
        )

    # -- the others
    def rollback_ansible(self) -> dict[str, Any]:
        inv = self.work / "ansible.ini"
        lines = [
            "[feedhandler]",
            *(f"{h.name} ansible_host={h.address}" for h in self.hosts),
            "",
            "[feedhandler:vars]",
            f"ansible_ssh_common_args=-F {self.ssh_config}",
        ]
        inv.write_text("\n".join(lines) + "\n")
        control = Path(tempfile.mkdtemp(prefix="cp-", dir="/tmp"))
        (self.work / "cm").mkdir(exist_ok=True)
        env = {
            "ANSIBLE_CONFIG": str(bl.BENCH / "ansible" / "ansible.cfg"),
            "ANSIBLE_STRATEGY": "free",
            "ANSIBLE_FORKS": str(self.n),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control),
            "ANSIBLE_LOCAL_TEMP": str(self.work / "ansible-tmp"),
            "ANSIBLE_HOME": str(self.work / "ansible-home"),
            "ANSIBLE_NOCOLOR": "1",
        }
        # Timed from the start: one master connection to each jump host first (ControlPersist), so every
        # ProxyJump hop is a channel of it instead of a new handshake at the bastion (without it, 64 hosts
        # at once are past sshd's MaxStartups there); then the playbook.
        masters = "".join(f"ssh -F {self.ssh_config} -o ControlMaster=yes -fN {dc}-jump && " for dc in self.jumps)
        playbook = [
            str(bl.BENCH_VENV / "bin" / "ansible-playbook"),
            "-i",
            str(inv),
            str(bl.BENCH / "ansible" / "rollback.yml"),
            "-e",
            f"to={TO} poll_interval={self.poll}",
        ]
        try:
            return measured(["bash", "-c", masters + 'exec "$@"', "ansible", *playbook], env=env)
        finally:
            close_masters(control)
            close_masters(self.work / "cm")
            (self.work / "cm").mkdir(exist_ok=True)

    def rollback_pyinfra(self) -> dict[str, Any]:
        inv = self.work / "pyinfra_inventory.py"
        entries = [
            (
                h.name,
                {
                    "ssh_hostname": h.address,
                    "ssh_user": "vagrant",
                    "ssh_key": str(h.key),
                    "ssh_known_hosts_file": str(SCALE_DIR / "known_hosts"),
                    "ssh_strict_host_key_checking": "yes",
                    "ssh_config_file": str(self.pyinfra_ssh_config),
                },
            )
            for h in self.hosts
        ]
        inv.write_text(f"feedhandler = {entries!r}\n")
        deploy = bl.BENCH / "pyinfra" / "rollback_deploy.py"
        (self.work / "cm").mkdir(exist_ok=True)
        # Timed from the start, as for Ansible: one master connection to each jump host, then pyinfra.
        masters = "".join(f"ssh -F {self.ssh_config} -o ControlMaster=yes -fN {dc}-jump && " for dc in self.jumps)
        argv = [
            str(bl.BENCH_VENV / "bin" / "pyinfra"),
            str(inv),
            str(deploy),
            "-y",
            "--parallel",
            str(self.n),
            "--no-wait",
            "--data",
            f"to={TO}",
            "--data",
            f"poll_interval={self.poll}",
        ]
        try:
            return measured(["bash", "-c", masters + 'exec "$@"', "pyinfra", *argv], cwd=self.work)
        finally:
            close_masters(self.work / "cm")
            (self.work / "cm").mkdir(exist_ok=True)

    def rollback_floor(self) -> dict[str, Any]:
        script = bl.floor_script()
        runner = self.work / "floor.py"
        runner.write_text(FLOOR_RUNNER)
        argv = [
            sys.executable,
            str(runner),
            script,
            COMPONENT,
            TO,
            str(PORT),
            str(self.floor_poll),
            *(h.container for h in self.hosts),
        ]
        return measured(argv)

    def rollback_sshfloor(self) -> dict[str, Any]:
        """The floor's script run as root on every host at once through upgrader's own SSH transport.

        One shared connection per jump host, paced handshakes, then per host one session, sudo and bash
        running the floor's flip, restart and health wait: no agent, no locks, no journal, no validated
        inputs.  That is the least any tool pays that reaches each host over SSH with sudo, on top of the
        floor; a goal that allows upgrader less time than this asks for less than SSH itself costs here.
        """
        script = bl.floor_script()
        runner = self.work / "sshfloor.py"
        runner.write_text(SSH_FLOOR_RUNNER)
        argv = [
            sys.executable,
            str(runner),
            str(self.inventory),
            script,
            COMPONENT,
            TO,
            str(PORT),
            str(self.floor_poll),
        ]
        return measured(argv, env=CODE, cwd=Path(CODE.get("PYTHONPATH", bl.REPO)))

    # -- out of band
    def set_from(self) -> None:
        bl.set_version(self.hosts, COMPONENT, FROM, PORT)

    def problems(self, version: str) -> dict[str, str]:
        script = (bl.BENCH / "floor" / "health.sh").read_text() + (
            f"\nhealth {PORT} {version} 0.1 5 || exit 1\n"
            f'[ "$(readlink /opt/{COMPONENT}/current)" = "releases/{version}" ] || {{ echo "current: $(readlink '
            f'/opt/{COMPONENT}/current)" >&2; exit 1; }}\n'
        )
        with ThreadPoolExecutor(max_workers=32) as ex:
            procs = list(ex.map(lambda h: bl.attach(h, script), self.hosts))
        return {
            h.name: (p.stderr or p.stdout).strip()[-200:]
            for h, p in zip(self.hosts, procs, strict=True)
            if p.returncode != 0
        }


# The floor's launcher: one lxc-attach per host, all at once (a child process, so it is sampled like the tools).
FLOOR_RUNNER = r"""
import subprocess, sys
script, component, to, port, poll, *containers = sys.argv[1:]
path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
procs = [subprocess.Popen(["lxc-attach", "-n", c, "--clear-env", "--set-var", path, "--", "/bin/bash", "-c", script,
                           "rollback", component, to, port, poll], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
         for c in containers]
codes = [p.wait() for p in procs]
sys.exit(max(codes))
"""

# The SSH floor's launcher: the floor's script through upgrader's transport (the tree under test), all hosts at once.
SSH_FLOOR_RUNNER = r"""
import sys, threading
from pathlib import Path
import yaml
from upgrader.transport.base import Endpoint, Timeouts
from upgrader.transport.fabric_adapter import FabricTransport
from upgrader.transport.gateways import Gateways
inventory, script, component, to, port, poll = sys.argv[1:]
data = yaml.safe_load(open(inventory))
base, d = Path(inventory).parent, data["defaults"]
key, known = str(base / d["ssh_key"]), str(base / data["known_hosts"])
timeouts = Timeouts()
gateways = Gateways(timeouts)
transports = []
for dc, dcd in data["datacenters"].items():
    jump = Endpoint(f"{dc}-jump", dcd["jump"]["address"], user=d["user"], ssh_key=key, known_hosts=known)
    for name, h in dcd["hosts"].items():
        ep = Endpoint(name, h["address"], user=d["user"], ssh_key=key, known_hosts=known, jump=jump)
        transports.append(FabricTransport(ep, timeouts, gateways))
failed = []
def one(t):
    try:
        # a stream, as the agent is run (a raw channel), not Fabric's run() and its runner threads
        stream = t.stream(["/bin/bash", "-c", script + "\necho @@floor-end", "rollback", component, to, port, poll],
                          sudo=True)
        r = stream.exchange(None, until="@@floor-end", timeout=120)
        if "@@floor-end" not in r.stdout:
            failed.append("%s: %s %s" % (t.endpoint.name, r, r.stderr[-200:]))
    except Exception as exc:
        failed.append("%s: %s" % (t.endpoint.name, exc))
threads = [threading.Thread(target=one, args=(t,)) for t in transports]
for th in threads:
    th.start()
for th in threads:
    th.join()
gateways.close()
sys.stderr.write("".join(f + "\n" for f in failed))
sys.stderr.flush()
import os
os._exit(1 if failed else 0)  # no interpreter teardown: paramiko's reader threads may still be winding down
"""


def close_masters(control: Path) -> None:
    for sock in control.glob("*"):
        subprocess.run(
            ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"], capture_output=True, timeout=10, check=False
        )
    shutil.rmtree(control, ignore_errors=True)


def journal_retries(state: Path, since: float) -> int:
    """Handshake retries the runs since ``since`` recorded in their journals (any numeric field named *retr*)."""
    total = 0
    for journal in state.glob("runs/*/journal.jsonl"):
        if journal.stat().st_mtime < since:
            continue
        for line in journal.read_text().splitlines():
            if "retr" not in line:
                continue
            try:
                total += _retries(json.loads(line))
            except ValueError:
                continue
    return total


def _retries(value: Any) -> int:
    if isinstance(value, dict):
        return sum(
            v if "retr" in k and isinstance(v, int) and not isinstance(v, bool) else _retries(v)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return sum(_retries(v) for v in value)
    return 0


def step(scale: Scale, name: str, fn: Any, expect: str | None) -> dict[str, Any]:
    since = time.time()
    res = fn()
    res["refused"] = refused_since(since)
    res["refused_lines"] = refused_lines(since)
    res["started_at"] = round(since, 3)
    # the same retries may be both logged and journaled (run-end's handshake_retries): the larger count
    res["retries"] = max((res["stderr"] + res["stdout"]).count("retrying"), journal_retries(scale.state, since))
    res["problems"] = scale.problems(expect) if expect else {}
    res["ok"] = res["exit"] == 0 and not res["problems"]
    tail = (res["stdout"] + res["stderr"])[-2500:]
    del res["stdout"], res["stderr"]
    if not res["ok"]:
        res["output_tail"] = tail
    for key in ("seconds", "cpu_s"):
        res[f"{key}_per_host"] = round(res[key] / scale.n, 5)
    res["pss_mb_per_host"] = round(res["peak_pss_mb"] / scale.n, 3)
    bl.log(
        f"{scale.n:>4} hosts {name:<18} {res['seconds']:8.2f} s  cpu {res['cpu_s']:6.2f} s  "
        f"pss {res['peak_pss_mb']:7.1f} MB  threads {res['peak_threads']:5}  fds {res['peak_fds']:5}  "
        f"refused {res['refused']}  retries {res['retries']}  load {res['load_avg_1m']}  "
        + ("ok" if res["ok"] else f"FAILED {list(res['problems'].items())[:3]} {tail[-600:]}")
    )
    return res


def run_size(
    hosts: list[Host], jumps: dict[str, str], size: int, tools: list[str], args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    scale = Scale(
        subset(hosts, size), jumps, work / f"n{size}", args.parallel, args.poll, args.floor_poll, args.max_in_flight
    )
    out: dict[str, Any] = {"hosts": scale.n, "parallel": scale.parallel}
    bl.set_version(scale.hosts, COMPONENT, TO, PORT)  # every host on the baseline 3.0.0, no lock (untimed)
    out["facts"] = step(scale, "upgrader facts", scale.facts, None)
    out["apply"] = step(scale, "upgrader apply", scale.apply, FROM)
    if not out["apply"]["ok"]:
        # The rollbacks still need 3.1.0 staged everywhere: set up again, gently (untimed).  A fresh state
        # directory: without a connection record apply starts no early connections, which --parallel
        # does not bound.
        saved = scale.parallel, scale.state
        scale.parallel, scale.state = 4, scale.work / "setup-state"
        out["setup-apply"] = step(scale, "setup apply (-p 4)", scale.apply, FROM)
        scale.parallel, scale.state = saved
    for tool in tools:
        try:
            scale.set_from()
        except RuntimeError as exc:
            out[f"rollback-{tool}"] = {"ok": False, "skipped": f"hosts not on {FROM}: {str(exc)[:500]}"}
            bl.log(f"{scale.n:>4} hosts rollback {tool}: SKIPPED, hosts not on {FROM}")
            continue
        out[f"rollback-{tool}"] = step(scale, f"rollback {tool}", getattr(scale, f"rollback_{tool}"), TO)
    return out


# ------------------------------------------------------------------ results
def ratios(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sizes = result["sizes"]
    for size, r in sizes.items():
        up = r.get("rollback-upgrader", {})
        if not up.get("ok"):
            continue
        row: dict[str, Any] = {}
        for tool in ("ansible", "pyinfra", "floor"):
            other = r.get(f"rollback-{tool}")
            if not other or not other.get("ok"):
                continue
            value = up["seconds"] / other["seconds"] if tool == "floor" else other["seconds"] / up["seconds"]
            goal = GOALS.get(int(size), {}).get(tool)
            met = None if goal is None else (value <= goal if tool == "floor" else value >= goal)
            row[tool] = {"value": round(value, 2), "goal": goal, "met": met}
        ssh = r.get("rollback-sshfloor")
        if ssh and ssh.get("ok"):
            # Each goal as the wall time it allows upgrader, beside what one bare SSH session per host
            # running the floor's script takes: a goal below that is out of reach of any SSH tool here.
            row["sshfloor"] = {"seconds": ssh["seconds"], "vs_upgrader": round(up["seconds"] / ssh["seconds"], 2)}
            for tool, goal in GOALS.get(int(size), {}).items():
                other = r.get(f"rollback-{tool}")
                if other and other.get("ok"):
                    allowed = other["seconds"] * goal if tool == "floor" else other["seconds"] / goal
                    row[tool].update(allows_s=round(allowed, 3), sshfloor_within=ssh["seconds"] <= allowed)
        out[size] = row
    first, last = min(sizes, key=int), max(sizes, key=int)
    growth = {}
    for command in (
        "facts",
        "apply",
        "rollback-upgrader",
        "rollback-ansible",
        "rollback-pyinfra",
        "rollback-floor",
        "rollback-sshfloor",
    ):
        a, b = sizes[first].get(command), sizes[last].get(command)
        if a and b and "skipped" not in a and "skipped" not in b:
            growth[command] = {
                k: round(b[k] / a[k], 2) if a[k] else None
                for k in ("seconds_per_host", "cpu_s_per_host", "pss_mb_per_host")
            }
            growth[command].update(
                peak_threads=[a["peak_threads"], b["peak_threads"]], peak_fds=[a["peak_fds"], b["peak_fds"]]
            )
    out["growth"] = {f"{first}->{last}": growth}
    up = sizes[last].get("rollback-upgrader", {})
    if int(last) == 256 and up:
        out["goals_256_controller"] = {
            "cpu_per_host_vs_16": growth.get("rollback-upgrader", {}).get("cpu_s_per_host"),
            "cpu_goal": "<= 1.2",
            "refused_upgrader": sum(
                sizes[last][c].get("refused", 0) for c in ("facts", "apply", "rollback-upgrader") if c in sizes[last]
            ),
            "peak_pss_mb": up.get("peak_pss_mb"),
            "rss_goal_mb": 400,
        }
    return out


def render(result: dict[str, Any]) -> str:
    lines = [
        f"# bench/scale.py — {result['meta']['date']}",
        "",
        f"code: `{result['meta']['git_start']}` … `{result['meta']['git_end']}`; "
        f"upgrader transport: {result['meta']['transport']}",
        "",
        "| hosts | command | wall s | s/host | CPU s | CPU ms/host | peak PSS MB | threads | fds | refused | "
        "retries | load | ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, r in result["sizes"].items():
        for command, m in r.items():
            if not isinstance(m, dict):
                continue
            if "skipped" in m:
                lines.append(f"| {size} | {command} | skipped: {m['skipped'][:80]} |||||||||||")
                continue
            lines.append(
                f"| {size} | {command} | {m['seconds']:.2f} | {m['seconds_per_host']:.4f} | "
                f"{m['cpu_s']:.2f} | {m['cpu_s_per_host'] * 1000:.1f} | {m['peak_pss_mb']:.0f} | "
                f"{m['peak_threads']} | {m['peak_fds']} | {m['refused']} | {m['retries']} | "
                f"{m['load_avg_1m']} | {'yes' if m['ok'] else 'NO'} |"
            )
    lines += ["", "## Ratios (rollback)", "", "```json", json.dumps(result["ratios"], indent=2), "```", ""]
    return "\n".join(lines)


def compile_upgrader(tree: Path) -> None:
    """Byte-compile the upgrader under test once, untimed, as installing it would (pip compiles a wheel's modules).

    The other tools run from bench/.venv, compiled when pip installed them.  An editable or worktree
    upgrader has no __pycache__, and under PYTHONDONTWRITEBYTECODE (set on the lab machine) every run
    would compile its ~60 modules from source again: ~45 ms of CPU in the controller's start-up that an
    installed upgrader never pays.  compileall writes the .pyc files regardless of that variable; a
    module edited afterwards is simply compiled from source again (its .pyc no longer matches).
    """
    import compileall

    compileall.compile_dir(str(tree / "upgrader"), quiet=1)


def code_state(code: Path | None) -> str:
    if code is None:
        return bl.git_state()
    proc = subprocess.run(["git", "-C", str(code), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return f"{proc.stdout.strip()} (worktree {code})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="16,64,256")
    p.add_argument("--tools", default=",".join(TOOLS))
    p.add_argument("--parallel", type=int, help="upgrader --parallel (default: the host count, like Ansible's forks)")
    p.add_argument("--max-in-flight", type=int, help="apply's max_in_flight_per_datacenter (default: all its hosts)")
    p.add_argument("--poll", type=float, default=0.25, help="health poll interval for Ansible and pyinfra")
    p.add_argument("--floor-poll", type=float, default=0.05)
    p.add_argument("--out", type=Path)
    p.add_argument(
        "--code",
        type=Path,
        help="run upgrader from this tree (e.g. `git worktree add /tmp/head HEAD`), not the shared working tree",
    )
    p.add_argument(
        "--engine",
        help="compare engines instead of tools: local,temporal (interleaved rounds; bench/scale_engines.py)",
    )
    p.add_argument("--keep-work", action="store_true", help="keep the work directory (state, journals, worker logs)")
    p.add_argument("--rounds", type=int, default=2, help="with --engine: rounds of every engine")
    p.add_argument(
        "--activities-per-second",
        type=int,
        default=0,
        help="with --engine temporal: the datacenter workers' queue rate limit (0: none, as the local engine)",
    )
    p.add_argument("--worker-parallel", type=int, help="with --engine temporal: worker --parallel (default: its hosts)")
    args = p.parse_args()
    if args.code:
        CODE["PYTHONPATH"] = str(args.code.resolve())
    compile_upgrader(Path(CODE.get("PYTHONPATH", bl.REPO)))
    if not SCALE_INVENTORY.exists():
        raise SystemExit("scale lab not up: .venv/bin/python -m lab scale-up --hosts-per-dc 128")
    tools = args.tools.split(",")
    hosts, jumps = scale_hosts()
    git_start = code_state(args.code)
    log = (
        subprocess.run(
            ["git", "log", "--oneline", "-i", "--grep", "jump", "-5"],
            capture_output=True,
            text=True,
            cwd=args.code or bl.REPO,
        )
        .stdout.strip()
        .splitlines()
    )
    work = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    result: dict[str, Any] = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "git_start": git_start,
            "jump_commits": log,
            "cpus": os.cpu_count(),
            "tools": tools,
            "transport": "see jump_commits: shared jump connection only if H4's commit is among them",
            "poll": args.poll,
            "floor_poll": args.floor_poll,
        },
        "sizes": {},
    }
    stamp = datetime.now(UTC).date().isoformat()
    out = args.out or bl.RESULTS / f"scale-{stamp}.json"
    if args.engine:
        return engines_main(args, hosts, jumps, work, result)
    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            result["sizes"][str(size)] = run_size(hosts, jumps, size, tools, args, work)
            result["meta"]["git_end"] = code_state(args.code)
            result["ratios"] = ratios(result)
            out.write_text(json.dumps(result, indent=2) + "\n")
            out.with_suffix(".md").write_text(render(result))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result["ratios"], indent=2))
    bl.log(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def engines_main(
    args: argparse.Namespace, hosts: list[Host], jumps: dict[str, str], work: Path, result: dict[str, Any]
) -> int:
    """--engine local,temporal: bench/scale_engines.py on each size, one extra host per size as the gate host."""
    import scale_engines

    engines = args.engine.split(",")
    stamp = datetime.now(UTC).date().isoformat()
    out = args.out or bl.RESULTS / f"scale-temporal-{stamp}.json"
    result["meta"].update(engines=engines, rounds=args.rounds)
    result["engines"] = {}
    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            chosen = subset(hosts, size)
            spare = [h for h in hosts if h.dc == "ch2" and h not in chosen]
            if not spare:
                raise SystemExit(f"no spare ch2 host for the gate: scale-up --hosts-per-dc {size // 2 + 1}")
            scale = Scale(
                chosen, jumps, work / f"n{size}", args.parallel, args.poll, args.floor_poll, args.max_in_flight
            )
            args.hosts_per_dc = size // 2 + 1

            def save(partial: dict[str, Any], size: int = size) -> None:
                result["engines"][str(size)] = partial
                result["meta"]["git_end"] = code_state(args.code)
                out.write_text(json.dumps(result, indent=2) + "\n")
                out.with_suffix(".md").write_text(scale_engines.render(result))

            save(scale_engines.run(scale, spare[0], engines, args.rounds, args, save))
    finally:
        if args.keep_work:
            bl.log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: v.get("ratios") for k, v in result["engines"].items()}, indent=2))
    bl.log(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.modules["scale"] = sys.modules["__main__"]  # bench/scale_engines.py shares this module's state (CODE)
    raise SystemExit(main())
