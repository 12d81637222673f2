"""A/B of `upgrader rollback` between two code trees on the same scale-lab hosts, in one run.

    .venv/bin/python -m lab scale-up --hosts-per-dc 128
    git worktree add --detach /tmp/upg-a <commit A>; git worktree add --detach /tmp/upg-b <commit B>
    .venv/bin/python bench/rollback_ab.py --hosts 256 --rounds 3 /tmp/upg-a /tmp/upg-b

Rounds interleave the trees (order alternating).  Before each trial every host is put on 3.1.0 out of
band and left to settle; after it every host is checked on 3.0.0.  Per trial: wall time of the whole
command, the controller's CPU (the reaped tree's rusage), the whole machine's busy CPU over the trial
(/proc/stat), and from the run's journal when the first host began and the last ended.  The same
playbook, inventory, --parallel and handshake limits as bench/scale.py.  Writes
bench/results/rollback_ab-<date>-<hosts>.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
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
import rollback_cpu as rc
import scale as sc


def journal_span(state: Path, since: float) -> dict[str, float]:
    """Seconds from the run's start record to its first host-begin and to its end record."""
    runs = sorted((p for p in (state / "runs").iterdir() if p.stat().st_mtime >= since), key=lambda p: p.name)
    records = [json.loads(line) for line in (runs[-1] / "journal.jsonl").read_text().splitlines()]

    def at(r: dict[str, Any]) -> float:
        return datetime.fromisoformat(r["at"]).timestamp()

    start = at(records[0])
    return {
        "first_host_s": round(min(at(r) for r in records if r.get("event") == "host-begin") - start, 3),
        "run_s": round(at(records[-1]) - start, 3),
    }


def trial(scale: sc.Scale, tree: str, settle: float) -> dict[str, Any]:
    """rollback_cpu's trial of upgrader, run from ``tree``, and the span of the run's journal."""
    sc.CODE["PYTHONPATH"] = tree
    since = time.time()
    out = {"tree": tree, **rc.trial(scale, "upgrader", [f"ups-{dc}-jump" for dc in scale.jumps], settle)}
    with contextlib.suppress(OSError, ValueError, IndexError, KeyError):  # no journal: the other figures stand
        out.update(journal_span(scale.state, since))
    return out


def render(result: dict[str, Any]) -> str:
    m = result["meta"]
    lines = [
        f"# bench/rollback_ab.py — {m['started']}",
        "",
        f"{m['hosts']} hosts through 2 jump hosts, {m['rounds']} interleaved rounds, 2 shared cores; medians "
        "over the trials that left every host on 3.0.0.",
        "",
        "| tree | code | wall s | controller CPU s | hosts' CPU s | jump hosts' CPU s | machine busy s | "
        "of capacity s | first host s | run s | ok |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    keys = (
        "seconds",
        "controller_cpu_s",
        "hosts_cpu_s",
        "jumps_cpu_s",
        "machine_busy_s",
        "machine_capacity_s",
        "first_host_s",
        "run_s",
    )
    for tree, row in result["trees"].items():
        cells = " | ".join(str(row.get(k, "-")) for k in keys)
        lines.append(f"| {tree} | {row['code']} | {cells} | {row['ok']}/{row['trials']} |")
    rows = list(result["trees"].values())
    a, b = rows[0], rows[-1]
    if len(rows) == 2 and a.get("seconds") and b.get("seconds"):
        lines += [
            "",
            f"Ratio of medians, second / first: wall {b['seconds'] / a['seconds']:.3f}, controller CPU "
            f"{b['controller_cpu_s'] / a['controller_cpu_s']:.3f}, machine busy "
            f"{b['machine_busy_s'] / a['machine_busy_s']:.3f}.",
        ]
    lines += [
        "",
        "Trials, in order:",
        "",
        "| round | tree | wall s | controller CPU s | busy s | ok |",
        "|---:|---|---:|---:|---:|---|",
    ]
    lines += [
        f"| {t['round']} | {t['tree']} | {t['seconds']} | {t['controller_cpu_s']} | {t['machine_busy_s']} | {t['ok']} |"
        for t in result["trials"]
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("trees", nargs=2, type=Path, help="two code trees (git worktrees), A then B")
    p.add_argument("--hosts", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--settle", type=float, default=3.0, help="seconds after putting the hosts on 3.1.0")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    trees = [str(t.resolve()) for t in args.trees]
    hosts, jumps = sc.scale_hosts()
    for tree in trees:
        sc.compile_upgrader(Path(tree))
    work = Path(f"/tmp/rollback-ab-{os.getpid()}")
    scale = sc.Scale(sc.subset(hosts, args.hosts), jumps, work, None, 0.25, 0.05, 16)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        bl.set_version(scale.hosts, sc.COMPONENT, sc.TO, sc.PORT)
        sc.CODE["PYTHONPATH"] = trees[0]
        setup = scale.apply()  # stages 3.1.0 with upgrader's records everywhere
        if setup["exit"] != 0:
            raise SystemExit(f"setup apply failed: {setup['stderr'][-800:]}")
        trials = []
        for r in range(args.rounds):
            for tree in trees if r % 2 == 0 else trees[::-1]:
                t = trial(scale, tree, args.settle)
                t["round"] = r + 1
                bl.log(
                    f"round {r + 1} {tree}: {t['seconds']:.2f} s  controller {t['controller_cpu_s']:.2f} s  "
                    f"busy {t['machine_busy_s']:.1f}/{t['machine_capacity_s']:.1f}  "
                    f"{'ok' if t['ok'] else 'FAILED'}"
                )
                trials.append(t)
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    per_tree = {}
    for tree in trees:
        good = [t for t in trials if t["tree"] == tree and t["ok"]]
        row: dict[str, Any] = {
            "code": sc.code_state(Path(tree)),
            "ok": len(good),
            "trials": sum(t["tree"] == tree for t in trials),
        }
        for key in (
            "seconds",
            "controller_cpu_s",
            "hosts_cpu_s",
            "jumps_cpu_s",
            "machine_busy_s",
            "machine_capacity_s",
            "first_host_s",
            "run_s",
        ):
            values = [t[key] for t in good if key in t]
            if values:
                row[key] = round(statistics.median(values), 3)
        per_tree[tree] = row
    result = {
        "meta": {"started": started, "hosts": args.hosts, "rounds": args.rounds, "settle_s": args.settle},
        "trees": per_tree,
        "trials": trials,
    }
    out = args.out or bl.RESULTS / f"rollback_ab-{started[:10]}-{args.hosts}.json"
    bl.write_json(out, result)
    out.with_suffix(".md").write_text(render(result))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
