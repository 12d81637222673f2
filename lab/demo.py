"""The demo that lab/demo.sh runs once the lab is up: the three uses of upgrader, on real hosts.

1. A weekend upgrade of the feed handler across both datacenters, canary first in each.
2. A broken order-gateway hotfix that only a canary's bake catches: rolled back automatically.
3. An emergency rollback of the feed handler "at 10:05 on a Tuesday": parallel, audited.

Every step is the real `upgrader` command an operator would type.  The lab runs on any day
of the week, so upgrades pass `--now` (a Saturday, 02:00 New York) to the window guard, a guard override
with its `--reason` (audited, notified); the
demo first shows the guard refusing the real time when that is outside the window.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab import config, control  # noqa: E402

SATURDAY = "2026-11-28T02:00:00-05:00"
# A simulated time is a guard override (break-glass): it needs a reason, and is audited and notified.
WEEKEND = ("--now", SATURDAY, "--reason", "demo: the weekend window, simulated")
STATE = REPO / ".lab" / "demo-state"
INVENTORY = "inventories/vagrant.yml"
FEED = "playbooks/feedhandler-3.1.0.yml"
CRASH = "lab/playbooks/ordergw-5.1.1+crash.yml"


def banner(text: str) -> None:
    print(f"\n\033[1m=== {text}\033[0m" if sys.stdout.isatty() else f"\n=== {text}", flush=True)


def upgrader(*args: str, expect: int | tuple[int, ...] = 0) -> int:
    exe = Path(sys.executable).parent / "upgrader"
    argv = [str(exe) if exe.exists() else "upgrader", *args]
    print("$ upgrader " + " ".join(args), flush=True)
    env = {
        **os.environ,
        "UPGRADER_STATE_DIR": str(STATE),
        "UPGRADER_ARTIFACTS": str(config.ARTIFACTS),
        "UPGRADER_OPERATOR": os.environ.get("UPGRADER_OPERATOR", "demo"),
    }
    code = subprocess.run(argv, cwd=REPO, env=env, check=False, stdin=subprocess.DEVNULL).returncode
    wanted = (expect,) if isinstance(expect, int) else expect
    print(f"(exit {code})", flush=True)
    if code not in wanted:
        raise SystemExit(f"demo: `upgrader {args[0]}` exited {code}, expected {' or '.join(map(str, wanted))}")
    return code


def last_run() -> str:
    return sorted((STATE / "runs").iterdir())[-1].name


def main() -> int:
    shutil.rmtree(STATE, ignore_errors=True)
    banner("lab: every host back on the baseline (feedhandler 3.0.0, ordergw 5.0.0, riskgw 2.4.0)")
    control.reset()
    upgrader("validate", FEED, "playbooks/ordergw-5.2.0.yml", "playbooks/riskgw-2.5.0.yml", CRASH, "-i", INVENTORY)
    upgrader("status", "-i", INVENTORY, "feedhandler", "ordergw")

    banner("1. weekend upgrade: feedhandler 3.0.0 → 3.1.0, canary + bake per datacenter, then waves")
    upgrader("windows", "-i", INVENTORY, FEED, expect=(0, 1))
    upgrader("plan", FEED, "-i", INVENTORY, "--live")
    upgrader("apply", FEED, "-i", INVENTORY, "--yes", *WEEKEND, "--log-format", "plain")
    upgrader("apply", FEED, "-i", INVENTORY, "--yes", *WEEKEND)  # idempotent: nothing to do

    banner("2. a broken hotfix: ordergw 5.1.1+crash dies seconds after start; the ny5 canary's bake catches it")
    upgrader("apply", CRASH, "-i", INVENTORY, "--yes", *WEEKEND, "--log-format", "plain", expect=3)
    failed_run = last_run()
    upgrader("show", failed_run)
    report = REPO / "build" / "demo" / f"{failed_run}.html"
    report.parent.mkdir(parents=True, exist_ok=True)
    upgrader("report", failed_run, "--out", str(report))

    banner("3. emergency: Tuesday 10:05, market open, feedhandler 3.1.0 misbehaves — roll back now")
    upgrader(
        "rollback",
        "feedhandler",
        "-i",
        INVENTORY,
        "--reason",
        "DEMO: 3.1.0 drops XCBO depth updates",
        "--yes",
        "--log-format",
        "plain",
    )
    upgrader("status", "-i", INVENTORY, "feedhandler", "ordergw")
    upgrader("runs")
    audit = [json.loads(line) for line in (STATE / "audit.log").read_text().splitlines()]
    print(f"audit log: {len(audit)} entries, last: {audit[-1]}")
    print(f"\npostmortem report of the failed run: {report.relative_to(REPO)}")
    print(f"journals: {STATE.relative_to(REPO)}/runs/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
