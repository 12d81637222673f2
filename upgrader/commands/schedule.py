"""`upgrader schedule PLAN.json|PLAYBOOK -i INVENTORY --at 'Sat 02:00 America/New_York'`: systemd timer and cron line.

Scheduling a reviewed plan is the point: the timer applies exactly that saved plan, which `apply`
plans again from its inputs and refuses (notifying the inventory's targets) if anything moved.
The unit names the plan by its path *and* its reviewed content hash (``apply --plan-hash``): a
plan file replaced after review, with its playbook, is refused, not applied.  With a plan key
(``--plan-key``), the plan's signature is checked now and the unit checks it again at run time.
The run uses this command's state directory and artifact store, written into the unit as
absolute paths (the unit's environment cannot move them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import os
import pwd
import re
import shutil
import sys
from pathlib import Path

from upgrader.commands.inputs import Inputs, load_inputs
from upgrader.commands.windows import involved_datacenters
from upgrader.errors import RefusedError
from upgrader.loading import output
from upgrader.scheduling import Job, Schedule, cron_line, parse_at, parse_on, service_unit, timer_unit
from upgrader.windows import evaluate
from upgrader.windows.verdict import show

HELP = "write a systemd service + timer (and print a cron line) that runs `upgrader apply` unattended"


EPILOG = """\
examples:
  upgrader plan playbooks/ordergw-5.2.0.yml -i inventories/prod-na.yml --offline --out plan.json
  upgrader schedule plan.json -i inventories/prod-na.yml --on '2026-12-05 02:00 America/New_York' \\
      --user deploy --unit-dir /etc/systemd/system

exit codes: 0 units written; 1 bad input, an edited or stale plan, or a path that cannot be written; 2 usage
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "playbook",
        type=Path,
        metavar="PLAN.json|PLAYBOOK",
        help="a reviewed plan (`upgrader plan --out plan.json`), applied exactly; or a playbook",
    )
    parser.add_argument("-i", "--inventory", type=Path, required=True, help="the inventory the run uses")
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--at", metavar="'DAY HH:MM ZONE'", help="weekly start, e.g. 'Sat 02:00 America/New_York'")
    when.add_argument(
        "--on", metavar="'YYYY-MM-DD HH:MM ZONE'", help="one start, e.g. '2026-12-05 02:00 America/New_York'"
    )
    parser.add_argument("--user", help="run as this user, with their state directory (default: you)")
    parser.add_argument(
        "--on-failure",
        metavar="UNIT",
        help="OnFailure= unit (default: NAME-failed.service, written beside, which notifies)",
    )
    parser.add_argument("--unit-dir", type=Path, help="write NAME.service and NAME.timer here (default: stdout)")
    parser.add_argument("--name", type=unit_name, help="unit name (default: upgrader-COMPONENT-VERSION)")
    parser.add_argument("--env-file", help="EnvironmentFile with secrets (default: /etc/upgrader/NAME.env)")
    parser.add_argument(
        "--artifacts",
        type=Path,
        help="artifact store the run uses (default: $UPGRADER_ARTIFACTS, else build/artifacts)",
    )
    parser.add_argument(
        "--plan-key",
        type=Path,
        metavar="FILE",
        help="the plan's signature (PLAN.json.sig) must be valid under this key, now and when the "
        "timer runs (default: $UPGRADER_PLAN_KEY, if set, checked now only)",
    )


def unit_name(text: str) -> str:
    """A systemd unit name: it becomes a file name under --unit-dir, so no '/', no leading '.' or '-'."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,200}", text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a unit name: letters, digits, '_.:@-', starting with a letter or digit"
        )
    return text


def run(args: argparse.Namespace) -> int:
    output.check_dir(args.unit_dir, "--unit-dir")
    at: Schedule = parse_at(args.at) if args.at is not None else parse_on(args.on)  # --at "" is a bad --at
    if at.next_elapse(dt.datetime.now(dt.UTC)) is None:
        raise RefusedError(f"--on {args.on!r} is in the past", "pick a time to come")
    saved = args.playbook.suffix == ".json"
    if saved:
        from upgrader.commands.apply import verified_saved_plan

        # An edited plan, or one whose controller files changed, is refused now, too.
        plan, inputs = verified_saved_plan(args.playbook, args.inventory, args.plan_key, args.state_dir)
        component, version = plan.component, plan.target_version
        what = f"plan {args.playbook.resolve()} ({component} {version}, {plan.content_hash[:19]})"
        pinned: tuple[str, ...] = ("--plan-hash", plan.content_hash)
        if args.plan_key is not None:
            pinned += ("--plan-key", str(args.plan_key.resolve()))
    else:
        inputs = load_inputs(args.playbook, args.inventory)
        component, version = inputs.playbook.model.component, inputs.playbook.model.version
        what = f"{component} {version} from playbook {args.playbook.resolve()}"
        pinned = ()
    user = args.user or os.environ.get("SUDO_USER") or getpass.getuser()
    name = args.name or re.sub(r"[^A-Za-z0-9_.:-]", "-", f"upgrader-{component}-{version}")
    inventory = str(args.inventory.resolve())
    env_file = args.env_file or f"/etc/upgrader/{name}.env"
    failed = Job(
        name=f"{name}-failed",
        argv=(
            *upgrader_argv(),
            "notify",
            "failed",
            "-i",
            inventory,
            "--component",
            component,
            "--version",
            version,
            "--message",
            f"{name}.service failed: see `journalctl -u {name}.service`",
        ),
        workdir=str(Path.cwd()),
        env_file=env_file,
        description=f"upgrader: notify that {name}.service failed",
        lock_file="/dev/null",
        user=_known_user(user),
    )
    from upgrader.commands.live import artifacts_dir

    state = str(Path(args.state_dir).resolve())
    job = Job(
        name=name,
        argv=(
            *upgrader_argv(),
            "--state-dir",
            state,
            "apply",
            str(args.playbook.resolve()),
            *pinned,
            "-i",
            inventory,
            "--artifacts",
            str(artifacts_dir(args).resolve()),
            "--yes",
            "--log-format",
            "json",
        ),
        workdir=str(Path.cwd()),
        env_file=env_file,
        description=f"upgrader: apply {what} on {inputs.inventory.model.name}",
        lock_file=str(Path(state) / f"schedule-{name}.lock"),
        user=failed.user,
        on_failure=args.on_failure or f"{failed.name}.service",
        state_dir=state,  # this command's: where `upgrader status` and `report` here will look
    )
    units = {f"{name}.service": service_unit(job), f"{name}.timer": timer_unit(job, at)}
    if not args.on_failure:
        units[f"{failed.name}.service"] = service_unit(failed)
    if args.unit_dir:  # it exists (output.check_dir above): output paths never create directories
        for filename, text in units.items():
            path = args.unit_dir / filename
            output.write_text(path, text, "--unit-dir")
            print(f"wrote {path}", file=sys.stderr)
        print(f"enable with: systemctl daemon-reload && systemctl enable --now {name}.timer", file=sys.stderr)
    else:
        print("\n".join(f"# ---- {filename}\n{text}" for filename, text in units.items()))
    print("# ---- equivalent cron entry (crontab -e)")
    print(cron_line(job, at, shutil.which("flock") or "/usr/bin/flock"), end="")
    _warn_if_blocked(inputs, at)
    return 0


def _known_user(name: str) -> str:
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise RefusedError(
            f"--user {name!r}: no such user on this machine",
            "create the account the runs should use, or name another with --user",
        ) from None
    return name


def upgrader_argv() -> tuple[str, ...]:
    """An absolute way to run this upgrader: the installed script, else this interpreter's module."""
    script = shutil.which("upgrader")
    return (str(Path(script).resolve()),) if script else (sys.executable, "-m", "upgrader")


def _warn_if_blocked(inputs: Inputs, at: Schedule) -> None:
    """A time the guard would refuse is allowed to be scheduled, but the operator should know now."""
    playbook, inventory = inputs.playbook.model, inputs.inventory.model
    when = at.next_elapse(dt.datetime.now(dt.UTC))
    if when is None:
        return
    verdict = evaluate(playbook, inventory, involved_datacenters(inventory, playbook), when)
    if not verdict.allowed:
        print(
            f"warning: at the next start ({show(when, at.zone)}) the window guard would refuse the run:",
            file=sys.stderr,
        )
        for blocker in verdict.blockers:
            print(f"  - {blocker.text}", file=sys.stderr)
