"""`upgrader schedule PLAYBOOK -i INVENTORY --at 'Sat 02:00 America/New_York'`: systemd timer and cron line."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import sys
from pathlib import Path

from upgrader.commands.inputs import Inputs, load_inputs
from upgrader.commands.windows import involved_datacenters
from upgrader.errors import RefusedError
from upgrader.loading import output
from upgrader.scheduling import At, Job, cron_line, parse_at, service_unit, timer_unit
from upgrader.windows import evaluate
from upgrader.windows.verdict import show

HELP = "write a systemd service + timer (and print a cron line) that runs `upgrader apply` unattended"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("playbook", type=Path)
    parser.add_argument("-i", "--inventory", type=Path, required=True)
    parser.add_argument("--at", required=True, metavar="'DAY HH:MM ZONE'",
                        help="weekly start, e.g. 'Sat 02:00 America/New_York'")
    parser.add_argument("--unit-dir", type=Path, help="write NAME.service and NAME.timer here (default: stdout)")
    parser.add_argument("--name", help="unit name (default: upgrader-COMPONENT-VERSION)")
    parser.add_argument("--env-file", help="EnvironmentFile with secrets (default: /etc/upgrader/NAME.env)")


def run(args: argparse.Namespace) -> int:
    output.check_dir(args.unit_dir, "--unit-dir")
    inputs = load_inputs(args.playbook, args.inventory)
    at = parse_at(args.at)
    playbook = inputs.playbook.model
    name = args.name or re.sub(r"[^A-Za-z0-9_.:-]", "-", f"upgrader-{playbook.component}-{playbook.version}")
    job = Job(
        name=name,
        argv=(*upgrader_argv(), "apply", str(args.playbook.resolve()), "-i", str(args.inventory.resolve()),
              "--yes", "--log-format", "json"),
        workdir=str(Path.cwd()),
        env_file=args.env_file or f"/etc/upgrader/{name}.env",
        description=f"upgrader: {playbook.component} {playbook.version} on {inputs.inventory.model.name}",
        lock_file=str(Path(args.state_dir).resolve() / f"schedule-{name}.lock"),
    )
    service, timer = service_unit(job), timer_unit(job, at)
    if args.unit_dir:
        try:
            args.unit_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise RefusedError(f"cannot create {args.unit_dir}: {exc.strerror or exc}",
                               "choose another --unit-dir") from None
        for suffix, text in (("service", service), ("timer", timer)):
            path = args.unit_dir / f"{name}.{suffix}"
            output.write_text(path, text, "--unit-dir")
            print(f"wrote {path}", file=sys.stderr)
        print(f"enable with: systemctl daemon-reload && systemctl enable --now {name}.timer", file=sys.stderr)
    else:
        print(f"# ---- {name}.service\n{service}\n# ---- {name}.timer\n{timer}")
    print("# ---- equivalent cron entry (crontab -e)")
    print(cron_line(job, at, shutil.which("flock") or "/usr/bin/flock"), end="")
    _warn_if_blocked(inputs, at)
    return 0


def upgrader_argv() -> tuple[str, ...]:
    """An absolute way to run this upgrader: the installed script, else this interpreter's module."""
    script = shutil.which("upgrader")
    return (str(Path(script).resolve()),) if script else (sys.executable, "-m", "upgrader")


def _warn_if_blocked(inputs: Inputs, at: At) -> None:
    """A time the guard would refuse is allowed to be scheduled, but the operator should know now."""
    playbook, inventory = inputs.playbook.model, inputs.inventory.model
    when = at.next_elapse(dt.datetime.now(dt.UTC))
    verdict = evaluate(playbook, inventory, involved_datacenters(inventory, playbook), when)
    if not verdict.allowed:
        print(f"warning: at the next start ({show(when, at.zone)}) the window guard would refuse the run:",
              file=sys.stderr)
        for blocker in verdict.blockers:
            print(f"  - {blocker.text}", file=sys.stderr)
