"""`upgrader plan PLAYBOOK -i INVENTORY`: what would happen, for people and for `apply`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection
from pathlib import Path

from upgrader.commands import targeting
from upgrader.commands.inputs import Inputs, load_facts_for, load_inputs
from upgrader.errors import PLAN_EXIT_CODES, ExitCode, InputError, with_exit_codes
from upgrader.loading import output
from upgrader.models.facts import Facts
from upgrader.models.plan import Plan
from upgrader.planning import signing
from upgrader.planning.planner import facts_from_inventory, iter_hosts, make_plan, runs_component
from upgrader.planning.render import to_markdown, to_text
from upgrader.windows.overrides import market_problems

HELP = "compute the plan for a playbook (text, markdown or json)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("playbook", type=Path)
    parser.add_argument("-i", "--inventory", type=Path, required=True)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--facts", type=Path, help="facts file from `upgrader facts --out`")
    source.add_argument("--offline", action="store_true", help="use the versions recorded in the inventory")
    source.add_argument("--live", action="store_true", help="gather facts from the hosts over SSH")
    parser.add_argument(
        "--format",
        choices=["text", "markdown", "json"],
        default=None,
        help="default: json when --out ends in .json, else text",
    )
    parser.add_argument("--out", type=Path, help="write the plan to this file instead of stdout")
    parser.add_argument(
        "--plan-key",
        type=Path,
        metavar="FILE",
        help="also write OUT.sig, an HMAC-SHA256 signature of the JSON plan under this key "
        "(default: $UPGRADER_PLAN_KEY, if set); `apply --plan-key` checks it",
    )
    targeting.add_argument(parser)
    from upgrader.commands import live  # light (no SSH library); the same connection options as every live command

    live.add_connection_arguments(parser)
    parser.epilog = with_exit_codes(parser.epilog, PLAN_EXIT_CODES)


# One rule whatever the facts (live, offline, a facts file): a plan with problems is not a plan to apply.


def render(plan: Plan, fmt: str, verbose: bool = False, window: str | None = None) -> str:
    if fmt == "json":
        return plan.to_json()
    if fmt == "markdown":
        return to_markdown(plan, window)
    return to_text(plan, verbose=verbose)


def window_line(inputs: Inputs, selected: Collection[str] | None = None) -> str:
    """The window guard's verdict now, in one line, for the pull-request comment (the plan itself has no clock)."""
    import datetime as dt

    from upgrader.commands.windows import involved_datacenters
    from upgrader.windows import evaluate
    from upgrader.windows.verdict import show

    playbook, inventory = inputs.playbook.model, inputs.inventory.model
    verdict = evaluate(
        playbook,
        inventory,
        involved_datacenters(inventory, playbook, selected) or involved_datacenters(inventory, playbook),
        dt.datetime.now(dt.UTC),
    )
    head = f"{'allowed' if verdict.allowed else 'blocked'} at {show(verdict.now, verdict.zone)}"
    why = "; ".join(b.text for b in verdict.blockers)
    later = f"; next allowed {show(verdict.next_allowed, verdict.zone)}" if verdict.next_allowed else ""
    return head + (f" ({why})" if why else "") + later


def recorded_everywhere(inputs: Inputs, selected: Collection[str] | None = None) -> bool:
    """True when the inventory pins the installed version on every (selected) host of the component."""
    inv, component = inputs.inventory.model, inputs.playbook.model.component
    hosts = [
        h for _, n, h in iter_hosts(inv) if runs_component(inv, h, component) and (selected is None or n in selected)
    ]
    return bool(hosts) and all(component in h.installed for h in hosts)


def gather(args: argparse.Namespace, inputs: Inputs, selected: Collection[str] | None = None) -> tuple[Facts, str]:
    """The facts to plan from; live facts only from the ``selected`` hosts (a --limit), if given."""
    if args.facts:
        return load_facts_for(args.facts, inputs.inventory), f"facts file {args.facts}"
    if args.offline or (not args.live and recorded_everywhere(inputs, selected)):
        return facts_from_inventory(inputs.inventory.model), "versions recorded in the inventory"
    from upgrader.commands import live  # SSH only when asked for (or needed)

    pool = live.pool_for(inputs.inventory, args)
    try:
        return live.live_facts(inputs, pool, args.python, selected), "live facts from the hosts"
    finally:
        pool.close()


def run(args: argparse.Namespace) -> int:
    output.check(args.out)
    inputs = load_inputs(args.playbook, args.inventory)
    problems = market_problems(inputs.playbook.model.windows, inputs.playbook, inputs.inventory)
    if problems:  # the plan's windows could not be checked at apply time
        raise InputError(problems)
    selection = targeting.select(args, inputs.inventory)  # before any host is asked: a typo contacts nobody
    facts, source = gather(args, inputs, selection.hosts if selection else None)
    plan = make_plan(
        inputs.playbook.model,
        inputs.inventory.model,
        facts,
        playbook_ref=inputs.playbook_ref(),
        inventory_ref=inputs.inventory_ref(),
        limit=targeting.plan_limit(selection),
        controller_files=inputs.controller_files(),
    )
    fmt = args.format or ("json" if args.out and args.out.suffix == ".json" else "text")
    window = window_line(inputs, selection.hosts if selection else None) if fmt == "markdown" else None
    text = render(plan, fmt, args.verbose > 0, window)  # -v (every command's logging option) lists every step
    print(f"facts: {source}", file=sys.stderr)
    if args.out:
        secret = signing.key(args.plan_key) if fmt == "json" else None
        output.write_text(args.out, text)
        if secret is not None:  # for `apply --plan-key` on another machine
            output.write_text(signing.signature_path(args.out), signing.sign(text, secret) + "\n")
            print(f"wrote {signing.signature_path(args.out)}", file=sys.stderr)
        print(f"wrote {args.out} ({plan.content_hash})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return int(ExitCode.REFUSED) if plan.problems else 0
