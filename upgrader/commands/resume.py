"""`upgrader resume RUN`: finish a run whose orchestrator died, from its journal and the hosts' facts."""

from __future__ import annotations

import argparse
from pathlib import Path

from upgrader.cli.logs import say
from upgrader.commands import guardbypass, live
from upgrader.engine import admission
from upgrader.engine.apply import Apply, stop_on_signals
from upgrader.engine.locks import LocalLock
from upgrader.engine.notifier import notifier
from upgrader.engine.progress import Progress
from upgrader.engine.resume import analyze, ended, halted
from upgrader.errors import RUN_EXIT_CODES, RefusedError, with_exit_codes
from upgrader.journal import Journal, operator
from upgrader.loading.inputs import load_inventory, read_plan_file
from upgrader.models.plan import check_schema
from upgrader.vocabulary import Event

HELP = (
    "continue a run whose orchestrator was killed or that halted (Ctrl-C, a closed window; exit 5): "
    "hosts caught mid-step are rolled back, then the rest goes on"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN")
    parser.add_argument("-i", "--inventory", type=Path, help="default: the inventory the run used")
    parser.add_argument("--artifacts", type=Path, help="default: the artifact store the run used")
    parser.add_argument("--yes", action="store_true")
    guardbypass.add_arguments(parser, live.aware)
    live.add_connection_arguments(parser)
    live.add_output_arguments(parser)
    parser.epilog = with_exit_codes(
        parser.epilog,
        RUN_EXIT_CODES + "; 1 also: the run has finished (its hosts' versions are named) or is not an apply run",
    )


def run(args: argparse.Namespace) -> int:
    guardbypass.check(args)  # a --now without its reason is refused before anything is read or contacted
    journal = Journal.open(args.state_dir, args.run_id)
    entries = journal.entries()
    start = next((e for e in entries if e["event"] == "run-start"), None)
    if start is None or start.get("kind") != "apply":
        raise RefusedError(f"run {args.run_id} is not an apply run", "only apply runs can be resumed")
    if start.get("engine") == "temporal":  # its workflow carries on by itself; a second engine must not
        raise RefusedError(
            f"run {args.run_id} is a Temporal run: it resumes itself when a worker is back",
            f"follow it with `upgrader watch {args.run_id}`, stop it with `upgrader abort`",
        )
    end = ended(entries)
    if end is not None:
        raise RefusedError(
            f"run {args.run_id} already finished ({end.get('status')}, exit {end.get('exit_code')}): "
            f"{where_hosts_are(end)}",
            f"see `upgrader show {args.run_id}`",
        )
    stop = halted(entries)
    if stop is not None:
        print(f"resume {args.run_id}: it halted ({stop.get('message')}); {where_hosts_are(stop)}")
    plan = read_plan_file(journal.directory / "plan.json")
    check_schema(plan, f"run {args.run_id}'s plan", "resume it with the upgrader that started it, or roll it back")
    if plan.compute_hash() != start.get("plan_hash"):
        raise RefusedError(f"the saved plan of run {args.run_id} does not match its journal", "it was edited")
    strangers = sorted({e["host"] for e in entries if "host" in e} - {h.host for h in plan.hosts})
    if strangers:
        raise RefusedError(
            f"the journal of run {args.run_id} names hosts its plan does not have: {', '.join(strangers[:5])}",
            "the journal was edited; resume cannot trust it",
        )
    if args.inventory is None and not start.get("inventory_path"):
        raise RefusedError(f"run {args.run_id} does not record its inventory", "give it with -i INVENTORY")
    inventory = load_inventory(args.inventory or Path(start["inventory_path"]))
    if args.artifacts is None:
        args.artifacts = Path(start.get("artifacts") or "build/artifacts")
    recovery = analyze(entries, plan)
    pool = live.pool_for(inventory, args)
    try:
        print(
            f"resume {args.run_id}: done {sorted(recovery.done) or '-'}; to put back {recovery.back or '-'}; "
            f"{'finishing its rollback' if recovery.failing else 'then continuing the plan'}"
        )
        who = operator()
        glass = guardbypass.bypass(args, plan.spec, inventory.model, admission.datacenters(plan), None, who)
        live.confirm("resume?" + (f" ({glass.summary()})" if glass else ""), args.yes)
        with LocalLock(args.state_dir, plan.component, {"run": args.run_id, "operator": who}):
            journal.record(
                Event.RESUME,
                operator=who,
                done=sorted(recovery.done),
                back=recovery.back,
                failing=recovery.failing,
                break_glass=glass is not None,
                guard=glass.to_dict() if glass else None,
            )
            with Progress(args.log_format) as progress, notifier(inventory.model, admission.clock(args.now)) as notify:
                if glass:
                    guardbypass.announce(
                        args.state_dir,
                        glass,
                        command="resume",
                        component=plan.component,
                        version=plan.target_version,
                        run=args.run_id,
                        notify=notify,
                    )
                # Hosts caught mid-step are put back whatever the time; new phases start only inside a window.
                engine = Apply(
                    plan,
                    pool,
                    journal,
                    progress,
                    artifacts=live.artifacts_dir(args),
                    operator=who,
                    python=args.python,
                    admit=admission.admitter(plan, inventory.model, admission.clock(args.now)),
                    notify=notify,
                )
                with stop_on_signals(engine):
                    outcome = engine.run(recovery)
            progress.summary(f"{plan.component} {plan.target_version}: {outcome.status}", engine.summary_rows())
            live.export_metrics(args)
        say(args, f"{outcome.status}: {outcome.message} (run {args.run_id})", error=bool(outcome.exit_code))
        return int(outcome.exit_code)
    finally:
        pool.close()


def where_hosts_are(end: dict[str, object]) -> str:
    """Where the run-end says its hosts are, by version: "5.2.0: ny5-1; 5.1.0: ny5-2, ch2-1"."""
    hosts = end.get("hosts")
    if not isinstance(hosts, dict) or not hosts:
        return "its run-end names no hosts"
    by: dict[str, list[str]] = {}
    for host, summary in sorted(hosts.items()):
        version = summary.get("version") if isinstance(summary, dict) else None
        by.setdefault(str(version) if version else "unknown (a human must look)", []).append(host)
    return "; ".join(f"{version}: {', '.join(names)}" for version, names in sorted(by.items()))
