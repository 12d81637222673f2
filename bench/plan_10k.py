"""Benchmark: plan a 10,000-host inventory, planning alone and end to end through the CLI, and the plan's size.

    python bench/plan_10k.py [--hosts 10000] [--runs 5] [--profile] [--json OUT.json]

Writes a generated inventory (4 datacenters, md/oe/risk/ref roles, canary flags,
mixed installed versions) to a temporary directory, then times
(a) ``make_plan`` on already loaded models, and with the plan written (``to_json``),
(b) ``upgrader plan --format json`` in a fresh process, YAML loading included (wall and CPU, and the
sha256 of the plan it wrote, to compare trees),
and measures the saved plan: bytes on disk and per planned host, compact and gzipped, and the
same plan in the form schema 3 wrote (every step holding its operations), for the ratio.
Run it with another tree's ``upgrader`` first on PYTHONPATH to measure that tree (the schema-3
form is then the plan as that tree writes it).  Goals (issue 27 §4): at most 2 KB per planned
host on disk, planning at most 2 s.
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import hashlib
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

import upgrader
from upgrader.commands.inputs import load_inputs
from upgrader.planning.planner import facts_from_inventory, make_plan

REPO = Path(__file__).resolve().parent.parent
PLAYBOOK = REPO / "playbooks" / "ordergw-5.2.0.yml"
DATACENTERS = {  # name: (timezone, markets, share of the hosts)
    "ny5": ("America/New_York", ["XNYS", "XNAS"], 0.4),
    "ch2": ("America/Chicago", ["XCBO", "XCHI"], 0.3),
    "tr2": ("America/Toronto", ["XTSE"], 0.2),
    "ld4": ("Europe/London", ["XLON"], 0.1),
}
# role, share, what it has installed (ordergw hosts mostly on 5.0/5.1, some done, some too old)
ROLES = [("md", 0.35), ("oe", 0.45), ("risk", 0.15), ("ref", 0.05)]
ORDERGW = ["5.0.0", "5.0.3", "5.1.0", "5.1.2", "5.2.0", "4.9.0"]


def inventory(total: int) -> dict:
    dcs = {}
    n = 0
    for d, (dc, (tz, markets, share)) in enumerate(DATACENTERS.items()):
        count = round(total * share) if dc != "ld4" else total - n
        hosts = {}
        for i in range(count):
            role = _role(i)
            installed = {"feedhandler": "3.1.0"}
            if role in ("oe", "risk"):
                installed["riskgw"] = "2.4.0"
            if role == "oe":
                installed["ordergw"] = ORDERGW[(i * 7) % len(ORDERGW)]
            hosts[f"{dc}-{role}{i:05d}"] = {
                "address": f"10.{d}.{i // 250}.{i % 250 + 1}",
                "roles": [role],
                "canary": i % 97 == 0,
                "installed": installed,
            }
        n += count
        dcs[dc] = {
            "timezone": tz,
            "markets": markets,
            "jump": {"address": f"10.{d}.255.1", "user": "jump"},
            "hosts": hosts,
        }
    return {
        "name": "bench-10k",
        "defaults": {"user": "deploy", "ssh_key": "~/.ssh/id_ed25519"},
        "roles": {
            "md": ["feedhandler"],
            "oe": ["ordergw", "riskgw", "feedhandler"],
            "risk": ["riskgw"],
            "ref": ["refdata"],
        },
        "datacenters": dcs,
    }


def _role(i: int) -> str:
    point = (i % 100) / 100
    for role, share in ROLES:
        if point < share:
            return role
        point -= share
    return ROLES[-1][0]


def playbook(text: str) -> str:
    """The shipped ordergw playbook with a 10%-batch rollout over all four sites."""
    return text.replace("batch: 1\n", "batch: 10%\n").replace(
        "datacenter_order: [ny5, ch2]", "datacenter_order: [ny5, ch2, tr2, ld4]"
    )


def timed(fn, runs: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds of each run (CPU time of this process; a busy machine inflates wall time)."""
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def cli_timed(cmd: list[str], runs: int, **popen: Any) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds (user + system, from the child's rusage) of each run of the command."""
    wall, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, check=False, capture_output=True, **popen)
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall, cpu


def show(label: str, samples: tuple[list[float], list[float]], cpu: bool = True) -> None:
    for kind, values in zip(("wall", "cpu"), samples, strict=True):
        if kind == "cpu" and not cpu:
            continue
        med = statistics.median(values)
        print(
            f"{label:<44} {kind:<4} median {med * 1000:8.1f} ms   min {min(values) * 1000:8.1f}   "
            f"max {max(values) * 1000:8.1f}   (n={len(values)})"
        )
        label = ""


def schema_3_text(plan) -> str:
    """The plan as schema 3 wrote it: sorted keys, indented by 2, every step holding op, undo and verify."""
    if plan.schema_version <= 3:
        return plan.to_json()
    exclude = {"hosts": {"__all__": {"undo"}}} | ({"limit": True} if plan.limit is None else {})
    data = plan.model_dump(mode="json", exclude=exclude | ({} if plan.groups else {"groups": True}))
    return json.dumps({**data, "schema_version": 3}, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def sizes(plan) -> dict:
    """Bytes of the saved plan (as written, canonical compact, gzipped) and per planned host; the schema-3 form's."""
    text = plan.to_json().encode()
    compact = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    old = schema_3_text(plan).encode()
    hosts = len(plan.hosts)
    out = {
        "schema_version": plan.schema_version,
        "planned_hosts": hosts,
        "file_bytes": len(text),
        "file_bytes_per_host": round(len(text) / hosts, 1),
        "compact_bytes": len(compact),
        "compact_bytes_per_host": round(len(compact) / hosts, 1),
        "gzip_bytes": len(gzip.compress(text, 6, mtime=0)),
        "schema_3_bytes": len(old),
        "schema_3_bytes_per_host": round(len(old) / hosts, 1),
        "schema_3_compact_bytes": len(
            json.dumps(json.loads(old), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        ),
        "ratio_schema_3_to_file": round(len(old) / len(text), 2),
    }
    data = json.loads(text)
    if "operations" in data:
        out.update(operations=len(data["operations"]), programs=len(data["programs"]))
        out["steps"] = sum(len(data["programs"][h["program"]]) for h in data["hosts"])
    return out


def median_ms(samples: tuple[list[float], list[float]]) -> dict:
    wall, cpu = samples
    return {
        "wall_ms": round(statistics.median(wall) * 1000, 1),
        "wall_min_ms": round(min(wall) * 1000, 1),
        "cpu_ms": round(statistics.median(cpu) * 1000, 1),
        "cpu_min_ms": round(min(cpu) * 1000, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one planning run")
    parser.add_argument("--json", type=Path, help="also write the figures to this file (bench/results/)")
    args = parser.parse_args()
    results: dict = {"hosts": args.hosts, "runs": args.runs}
    with tempfile.TemporaryDirectory() as tmp:
        inv_path, pb_path = Path(tmp) / "inventory.yml", Path(tmp) / "ordergw.yml"
        inv_path.write_text(yaml.safe_dump(inventory(args.hosts), sort_keys=False), encoding="utf-8")
        pb_path.write_text(playbook(PLAYBOOK.read_text(encoding="utf-8")), encoding="utf-8")
        start = time.perf_counter()
        inputs = load_inputs(pb_path, inv_path)
        load_s = time.perf_counter() - start
        pb, inv = inputs.playbook.model, inputs.inventory.model
        refs = {"playbook_ref": inputs.playbook_ref(), "inventory_ref": inputs.inventory_ref()}

        def plan():
            return make_plan(pb, inv, facts_from_inventory(inv), **refs)

        result = plan()
        print(
            f"{args.hosts} hosts in {len(inv.datacenters)} datacenters: {len(result.hosts)} to upgrade, "
            f"{len(result.skipped)} skipped, {len(result.problems)} problems, {len(result.phases)} phases"
        )
        print(f"{'load + validate inputs (once)':<44} {load_s * 1000:8.1f} ms")
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(load_inputs, pb_path, inv_path)
            print("load + validate inputs, profiled:")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(15)
            profiler = cProfile.Profile()
            profiler.runcall(plan)
            print("make_plan, profiled:")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        results["size"] = size = sizes(result)
        print(
            f"saved plan (schema {size['schema_version']}): {size['file_bytes']:,} bytes, "
            f"{size['file_bytes_per_host']:,} per planned host; compact {size['compact_bytes']:,} "
            f"({size['compact_bytes_per_host']:,}/host); gzipped {size['gzip_bytes']:,}"
        )
        print(
            f"the same plan in schema 3's form: {size['schema_3_bytes']:,} bytes "
            f"({size['schema_3_bytes_per_host']:,}/host), compact {size['schema_3_compact_bytes']:,}: "
            f"{size['ratio_schema_3_to_file']}x the saved plan"
        )
        if "operations" in size:
            print(f"{size['operations']} operations, {size['programs']} programs for {size['steps']:,} steps")
        results["make_plan"] = median_ms(samples := timed(plan, args.runs))
        show("(a) make_plan on loaded models", samples)
        results["make_plan_and_write"] = median_ms(samples := timed(lambda: plan().to_json(), args.runs))
        show("    make_plan + to_json", samples)
        text = result.to_json()
        try:
            from upgrader.loading.inputs import read_plan_text

            def read() -> object:
                return read_plan_text(text, "plan.json")
        except ImportError:  # a tree from before schema 4
            from upgrader.models.plan import Plan

            def read() -> object:
                return Plan.model_validate_json(text)

        results["read_saved_plan"] = median_ms(samples := timed(read, args.runs))
        show("    read the saved plan back", samples)
        cmd = [
            sys.executable,
            "-m",
            "upgrader",
            "plan",
            str(pb_path),
            "-i",
            str(inv_path),
            "--format",
            "json",
            "--out",
            str(Path(tmp) / "plan.json"),
        ]
        # The process imports the tree this bench imported (PYTHONPATH), from the temporary directory:
        # `python -m` puts the working directory first on sys.path, so run from a checkout it would
        # measure that checkout's upgrader whatever PYTHONPATH says.
        env = {**os.environ, "PYTHONPATH": str(Path(upgrader.__file__).resolve().parents[1])}
        samples = cli_timed(cmd, args.runs, cwd=tmp, env=env)
        results["cli_plan"] = median_ms(samples)
        results["cli_plan_sha256"] = hashlib.sha256((Path(tmp) / "plan.json").read_bytes()).hexdigest()
        show("(b) upgrader plan --format json (process)", samples)
        print(f"{'':<44} plan.json sha256 {results['cli_plan_sha256']}")
        results["load_inputs_ms"] = round(load_s * 1000, 1)
        results["load_average"] = [round(x, 2) for x in os.getloadavg()]
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
