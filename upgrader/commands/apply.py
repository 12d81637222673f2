"""`upgrader apply PLAYBOOK -i INVENTORY`: execute a plan on the hosts."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from upgrader.cli.logs import say
from upgrader.commands import durable, guardbypass, live, targeting
from upgrader.commands.inputs import Inputs, load_inputs
from upgrader.engine import admission
from upgrader.engine.apply import Apply, stop_on_signals
from upgrader.engine.locks import LocalLock
from upgrader.engine.notifier import notifier
from upgrader.engine.pool import Pool
from upgrader.engine.progress import Progress
from upgrader.engine.staleness import drift, rederived_difference
from upgrader.errors import RUN_EXIT_CODES, ExitCode, NotConfirmed, RefusedError, UpgraderError, with_exit_codes
from upgrader.journal import Journal, new_run_id, operator
from upgrader.loading import bounded_read, pins
from upgrader.loading.inputs import load_inventory, load_playbook, read_plan_file, read_plan_text
from upgrader.models.inventory import Inventory
from upgrader.models.plan import Plan, check_schema
from upgrader.planning import limit as host_limit
from upgrader.planning import signing
from upgrader.planning.planner import facts_from_plan, make_plan
from upgrader.planning.render import to_text
from upgrader.vocabulary import Event, RunStatus
from upgrader.windows import load_overrides

HELP = "upgrade hosts: stage, canary + bake, waves, automatic rollback"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "playbook",
        type=Path,
        metavar="PLAYBOOK|PLAN.json",
        help="a playbook, or a plan saved with `upgrader plan --format json --out`",
    )
    parser.add_argument("-i", "--inventory", type=Path, required=True)
    parser.add_argument(
        "--artifacts", type=Path, help="artifact store (default: $UPGRADER_ARTIFACTS, else build/artifacts)"
    )
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--break-lock", metavar="REASON", help="take over stale host locks; the reason is journaled")
    guardbypass.add_arguments(parser, live.aware)
    parser.add_argument("--overrides", type=Path, help="operator window overrides (extra closures, freeze days)")
    parser.add_argument(
        "--plan-key",
        type=Path,
        metavar="FILE",
        help=f"a saved plan must carry a valid signature (PLAN.json.sig) under this key "
        f"(default: ${signing.ENV}, if set)",
    )
    parser.add_argument(
        "--plan-hash",
        metavar="sha256:HEX",
        type=_plan_hash,
        help="a saved plan must be this very plan (its content_hash): what `upgrader schedule` "
        "writes into the unit it generates, so a plan replaced after review is refused",
    )
    targeting.add_argument(parser)
    live.add_connection_arguments(parser)
    live.add_output_arguments(parser)
    durable.add_arguments(parser)
    parser.epilog = with_exit_codes(parser.epilog, RUN_EXIT_CODES)


def _plan_hash(text: str) -> str:
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a plan's content_hash (sha256: and 64 hex digits)")
    return text


def run(args: argparse.Namespace) -> int:
    guardbypass.check(args)  # a --now without its reason is refused before anything is read or contacted
    try:
        if args.playbook.suffix == ".json":
            return run_saved(args)
        if args.plan_hash:
            raise RefusedError(
                "--plan-hash names a saved plan's hash, and a playbook was given",
                "apply the saved plan (PLAN.json) the hash belongs to",
            )
        return run_playbook(args)
    except NotConfirmed:
        raise
    except RefusedError as exc:  # a window closed, a market open, a stale or edited plan: someone must know
        notify_refused(args, exc)
        raise


def notify_refused(args: argparse.Namespace, exc: RefusedError) -> None:
    """Best effort: the refusal is the outcome whether or not a webhook hears of it."""
    try:
        inventory = load_inventory(args.inventory).model
    except UpgraderError:
        return  # an unreadable inventory is itself the refusal; there is nobody to tell
    with notifier(inventory, lambda: datetime.now(UTC)) as notify:
        component, version = _release_of(args.playbook)
        notify("refused", component=component, version=version, message=f"apply {args.playbook} refused: {exc}")


def _release_of(path: Path) -> tuple[str, str]:
    """Component and version of a playbook or saved plan, through the same bounded loaders; '?' if unreadable."""
    try:
        if path.suffix == ".json":
            plan = read_plan_file(path)
            return plan.component, plan.target_version
        spec = load_playbook(path).model
        return spec.component, spec.version
    except UpgraderError:
        return "?", "?"


def run_playbook(args: argparse.Namespace) -> int:
    inputs = load_inputs(args.playbook, args.inventory)
    selection = targeting.select(args, inputs.inventory)  # a pattern matching nothing: refused, nobody contacted
    pool = live.pool_for(inputs.inventory, args)
    warming = admission.prefetch(inputs.playbook.model, inputs.inventory.model, admission.clock(args.now)())
    try:
        facts = live.live_facts(inputs, pool, args.python, selection.hosts if selection else None)
        warming.join()
        plan = live.plan_for(inputs, facts, targeting.plan_limit(selection))
        return execute(args, plan, pool, inputs.inventory.model)
    finally:
        pool.close()


def run_saved(args: argparse.Namespace) -> int:
    """Apply exactly a reviewed plan: refuse it unless its inputs still give it, byte for byte, and it still holds.

    Every check before the pool exists, so a refused plan never connects to any host.
    """
    plan, inputs = verified_saved_plan(
        args.playbook, args.inventory, args.plan_key, args.state_dir, expect_hash=args.plan_hash
    )
    if args.limit and (plan.limit is None or host_limit.split(args.limit) != plan.limit.patterns):
        raise RefusedError(
            f"--limit {','.join(args.limit)} is not the limit {args.playbook} was planned with "
            f"({','.join(plan.limit.patterns) if plan.limit else 'none'}); nothing was changed",
            "the limit is part of the reviewed plan: plan again with it, or drop --limit",
        )
    pool = live.pool_for(inputs.inventory, args)
    try:
        facts = live.live_facts(inputs, pool, args.python, plan.limit.hosts if plan.limit else None)
        reasons = drift(plan, facts, playbook_sha=inputs.playbook.sha256, inventory_sha=inputs.inventory.sha256)
        if reasons:
            for reason in reasons:
                say(args, f"stale: {reason}", error=True)
            raise RefusedError(
                f"{args.playbook} is stale ({len(reasons)} difference(s)); nothing was changed",
                "plan again and have the new plan reviewed",
            )
        return execute(args, plan, pool, inputs.inventory.model)
    finally:
        pool.close()


def verified_saved_plan(
    path: Path, inventory: Path, plan_key: Path | None = None, state: Path | None = None, expect_hash: str | None = None
) -> tuple[Plan, Inputs]:
    """The saved plan and its inputs, refused unless those inputs give that very plan again (no connection).

    With a plan key (``plan_key``, else $UPGRADER_PLAN_KEY), the plan must also carry its signature;
    with ``expect_hash`` (a scheduled run: the hash reviewed when it was scheduled), be that very plan.
    The files the run reads on the controller must be the ones the plan pinned (loading/pins.py).
    A limited plan's patterns must still select its hosts (``failed:RUN`` read from ``state``).
    """
    text = _read(path)
    plan = read_plan_text(text, str(path))
    secret = signing.key(plan_key)
    if secret is not None:
        signing.check(path, text, secret)
    check_schema(plan, str(path))
    if expect_hash is not None and plan.content_hash != expect_hash:
        raise RefusedError(
            f"{path} is plan {plan.content_hash[:19]}…, not the reviewed plan {expect_hash[:19]}…; "
            "nothing was contacted",
            "the plan file was replaced: schedule the new plan after review",
        )
    inputs = reviewed_inputs(path, plan, inventory)
    pins.check(plan, inputs.playbook.model, inputs.playbook.path.parent, str(path))  # before any connection
    if plan.limit is not None:
        _check_limit(path, plan, inputs, state)
    again = plan_again(plan, inputs)
    problem = rederived_difference(text, again)
    if problem:
        raise RefusedError(
            f"{path} is not what its playbook, inventory and facts give: {problem}",
            "a reviewed plan must not be edited; plan again and have the new plan reviewed",
        )
    # The same plan, byte for byte; planned here, its hosts share their operations, so writing it into
    # the run's journal is fast (a plan read from a file has one copy of everything per host).
    return again, inputs


def _check_limit(path: Path, plan: Plan, inputs: Inputs, state: Path | None) -> None:
    """The recorded patterns, resolved again, must select the recorded hosts: an edited limit is refused."""
    assert plan.limit is not None
    from upgrader.cli.main import state_dir

    args = argparse.Namespace(limit=plan.limit.patterns, state_dir=state or state_dir())
    try:
        selection = targeting.select(args, inputs.inventory)
    except host_limit.LimitSyntaxError as exc:
        raise RefusedError(f"{path}: limit {exc}", "a reviewed plan must not be edited; plan again") from None
    if selection is None or list(selection.hosts) != plan.limit.hosts:
        raise RefusedError(
            f"{path}: --limit {','.join(plan.limit.patterns)} selects "
            f"{', '.join(selection.hosts) if selection else 'nothing'} now, "
            f"not the {len(plan.limit.hosts)} host(s) the plan records",
            "a reviewed plan must not be edited; plan again and have the new plan reviewed",
        )


def reviewed_inputs(plan_path: Path, plan: Plan, inventory: Path) -> Inputs:
    """The playbook the plan names and the inventory given, refused unless they are the very files planned from."""
    playbook = _named_playbook(plan_path, plan, inventory)
    if playbook is None:
        raise RefusedError(
            f"{plan_path}: the playbook it was planned from, {plan.playbook.path}, is missing",
            "apply in the directory the plan was made in, with the same files; or plan again",
        )
    inputs = load_inputs(playbook, inventory)
    if inputs.inventory.sha256 != plan.inventory.sha256:
        raise RefusedError(
            f"{plan_path}: inventory {inventory} is not the one it was planned from "
            f"({plan.inventory.path}, sha256 {plan.inventory.sha256[:12]}…): it changed",
            "plan again with this inventory and have the new plan reviewed",
        )
    if inputs.playbook.sha256 != plan.playbook.sha256:
        raise RefusedError(
            f"{plan_path}: playbook {plan.playbook.path} changed since the plan was made",
            "plan again and have the new plan reviewed",
        )
    return inputs


def _named_playbook(plan_path: Path, plan: Plan, inventory: Path) -> Path | None:
    """Where the plan's playbook is: as recorded (absolute, or relative to the directory `plan` ran in).

    The directory `plan` ran in is the working directory, or the one that holds the inventory
    at the relative path the plan records for it (``apply`` run from somewhere else).
    """
    recorded = Path(plan.playbook.path)
    if recorded.is_absolute():
        return recorded if recorded.is_file() else None
    bases = [Path.cwd()]
    planned = Path(plan.inventory.path).parts
    given = inventory.resolve().parts
    if not Path(plan.inventory.path).is_absolute() and len(given) > len(planned) and given[-len(planned) :] == planned:
        bases.append(Path(*given[: -len(planned)]))
    return next((base / recorded for base in bases if (base / recorded).is_file()), None)


def plan_again(plan: Plan, inputs: Inputs) -> Plan:
    """The plan the reviewed inputs and the plan's assumed facts give, named as the saved plan names them."""
    try:
        facts = facts_from_plan(plan)
    except ValidationError as exc:
        raise RefusedError(
            f"the plan's facts_assumed are not facts: {exc.errors()[0]['msg']}",
            "a reviewed plan must not be edited; plan again",
        ) from None
    return make_plan(
        inputs.playbook.model,
        inputs.inventory.model,
        facts,
        playbook_ref=plan.playbook.model_copy(update={"sha256": inputs.playbook.sha256}),
        inventory_ref=plan.inventory.model_copy(
            update={"sha256": inputs.inventory.sha256, "name": inputs.inventory.model.name}
        ),
        limit=plan.limit,
        controller_files=inputs.controller_files(),
    )


def _read(path: Path) -> str:
    """The saved plan's text, through the bounded reader every plan file goes through (size cap, UTF-8)."""
    return bounded_read.read_text(path, "plan")


def execute(args: argparse.Namespace, plan: Plan, pool: Pool, inventory: Inventory) -> int:
    if plan.problems:
        sys.stdout.write(to_text(plan))
        raise RefusedError(
            f"the plan has {len(plan.problems)} problem(s); nothing was changed", "fix them (see above) and plan again"
        )
    if not plan.hosts:
        say(
            args,
            f"nothing to do: every host already runs {plan.component} {plan.target_version} "
            f"({len(plan.skipped)} skipped)",
        )
        return int(ExitCode.OK)
    if args.log_format != "json":
        sys.stdout.write(to_text(plan))
    now = admission.clock(args.now)
    overrides = load_overrides(args.overrides).model if args.overrides else None
    verdict = admission.check_now(plan, inventory, now(), overrides)
    who = operator()
    glass = guardbypass.bypass(args, plan.spec, inventory, admission.datacenters(plan), overrides, who)
    live.confirm(
        f"apply {plan.component} {plan.target_version} to {len(plan.hosts)} host(s)?"
        + (f" ({glass.summary()})" if glass else ""),
        args.yes,
    )
    if args.engine == "temporal":  # the same plan, checks and confirmation; a workflow runs it (README: Engines)
        if glass:
            with notifier(inventory, guardbypass.wall_clock) as notify:
                guardbypass.announce(
                    args.state_dir,
                    glass,
                    command="apply",
                    component=plan.component,
                    version=plan.target_version,
                    run=None,
                    notify=notify,
                )
        return durable.apply(args, plan, inventory, verdict)
    run_id = new_run_id(plan.component, datetime.now(UTC))
    with LocalLock(args.state_dir, plan.component, {"run": run_id, "operator": who}):
        journal = Journal.create(args.state_dir, run_id)
        journal.write_file("plan.json", plan.to_json())
        journal.record(
            Event.RUN_START,
            kind="apply",
            run=run_id,
            component=plan.component,
            version=plan.target_version,
            plan_hash=plan.content_hash,
            operator=who,
            argv=sys.argv[1:],
            hosts=[h.host for h in plan.hosts],
            break_lock=args.break_lock,
            limit=plan.limit.patterns if plan.limit else None,
            inventory_path=str(args.inventory.resolve()),
            artifacts=str(live.artifacts_dir(args).resolve()),
            window=verdict.to_dict(),
            break_glass=glass is not None,
            guard=glass.to_dict() if glass else None,
        )
        with Progress(args.log_format) as progress, notifier(inventory, now) as notify:
            if glass:
                guardbypass.announce(
                    args.state_dir,
                    glass,
                    command="apply",
                    component=plan.component,
                    version=plan.target_version,
                    run=run_id,
                    notify=notify,
                )
            progress.event("run", f"run {run_id}: {plan.component} → {plan.target_version} by {who}")
            engine = Apply(
                plan,
                pool,
                journal,
                progress,
                artifacts=live.artifacts_dir(args),
                operator=who,
                break_lock=args.break_lock,
                python=args.python,
                admit=admission.admitter(plan, inventory, now, overrides),
                notify=notify,
                host_seconds=admission.past_host_seconds(args.state_dir, plan.component),
            )
            try:
                with stop_on_signals(engine):
                    outcome = engine.run()
            except RefusedError as exc:
                journal.record(Event.RUN_END, status=RunStatus.REFUSED, exit_code=int(exc.exit_code), message=str(exc))
                raise
        progress.summary(f"{plan.component} {plan.target_version}: {outcome.status}", engine.summary_rows())
        live.export_metrics(args)
        say(
            args,
            f"{outcome.status}: {outcome.message} (run {run_id}; `upgrader show {run_id}`)",
            error=bool(outcome.exit_code),
        )
        return int(outcome.exit_code)
