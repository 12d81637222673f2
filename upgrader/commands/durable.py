"""What the commands share for Temporal runs: start one from `apply`, find a run's workflow, watch it.

asyncio is imported only where a server is asked: `rollback` imports this module on its emergency
path, where importing asyncio (~20 ms) would delay every host.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from upgrader.cli.logs import say
from upgrader.cli.progress import Progress
from upgrader.commands import live
from upgrader.engine import admission
from upgrader.errors import RefusedError, UpgraderError
from upgrader.journal import Journal, new_run_id, operator
from upgrader.models.inventory import Inventory
from upgrader.models.plan import Plan
from upgrader.records import RunEnd, RunStart
from upgrader.temporal import packed, settings
from upgrader.temporal.messages import Start

ENGINES = ("local", "temporal")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local (default): this process runs the upgrade; temporal: a durable workflow run "
        "by `upgrader worker`s in the datacenters (README: Engines)",
    )
    settings.add_arguments(parser)


def apply(args: argparse.Namespace, plan: Plan, inventory: Inventory, verdict: Any) -> int:
    """Start the verified plan as a workflow and watch it; the run goes on if this process dies.

    The plan and run are signed with the plan key (planning/signing.sign_run): the datacenter workers
    run nothing else, so a plan key is required here, before anything starts."""
    from upgrader.planning import signing

    found = settings.resolve(args, inventory, args.inventory)
    secret = signing.key(getattr(args, "plan_key", None))
    if secret is None:
        raise RefusedError(
            "--engine temporal needs the plan key: the datacenter workers run only plans signed with it",
            f"give --plan-key FILE or set ${signing.ENV} (the key the workers hold); nothing was changed",
        )
    wid, start = make_start(args, plan, inventory, verdict, found, secret)
    import asyncio

    datacenters = sorted({h.datacenter for h in plan.hosts})
    return asyncio.run(_start_and_watch(args, found, wid, start, datacenters))


def make_start(
    args: argparse.Namespace,
    plan: Plan,
    inventory: Inventory,
    verdict: Any,
    found: settings.Settings,
    secret: bytes,
) -> tuple[str, Start]:
    """The run's workflow id and start input: the plan stored in the artifact store (temporal/plan_store.py)
    and named by its reference, the run signed with ``secret``."""
    from upgrader.planning import signing
    from upgrader.temporal import plan_store

    who = operator()
    run_id = new_run_id(plan.component, datetime.now(UTC))
    offset = (args.now - datetime.now(UTC)).total_seconds() if args.now else 0.0
    run_start = {  # the journal's first record; its "hosts" the workflow adds from the plan (a small start)
        "seq": 1,
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "event": "run-start",
        "kind": "apply",
        "run": run_id,
        "component": plan.component,
        "version": plan.target_version,
        "plan_hash": plan.content_hash,
        "operator": who,
        "argv": sys.argv[1:],
        "break_lock": args.break_lock,
        "inventory_path": str(args.inventory.resolve()),
        "artifacts": str(live.artifacts_dir(args).resolve()),
        "window": verdict.to_dict(),
        "engine": "temporal",
        "temporal": settings.to_record(found),
    }
    from upgrader.temporal.client import workflow_id

    wid = workflow_id(plan.component, inventory.name)
    run_start["workflow_id"] = wid
    # The plan by reference: stored where the datacenter workers read releases, the start carries its hash.
    text = plan_store.text_of(plan)
    ref = plan_store.store(Path(run_start["artifacts"]), text)
    start = Start(
        run_id=run_id,
        plan=ref,
        operator=who,
        artifacts=run_start["artifacts"],
        python=args.python,
        break_lock=args.break_lock,
        now_offset=offset,
        overrides=str(args.overrides.resolve()) if args.overrides else None,
        host_seconds=admission.past_host_seconds(args.state_dir, plan.component),
        run_start=run_start,
        signature=signing.sign_run(text, run_id, args.python, args.break_lock, secret),
    )
    return wid, start


async def _start_and_watch(
    args: argparse.Namespace, found: settings.Settings, wid: str, start: Start, datacenters: list[str]
) -> int:
    from upgrader.temporal import client as temporal
    from upgrader.temporal.search import Labels

    first = start.run_start
    labels = Labels(start.run_id, str(first["component"]), str(first["version"]), datacenters, start.operator)
    connection = await temporal.connect(found)
    handle = await temporal.start(connection, wid, start, labels)
    say(
        args,
        f"run {start.run_id} started as Temporal workflow {wid} on {found.address}; it goes on if this "
        f"process stops — `upgrader watch {start.run_id}` reattaches",
    )
    return await _watch(args, handle, start.run_id)


async def _watch(args: argparse.Namespace, handle: Any, run_id: str) -> int:
    from upgrader.temporal import client as temporal

    with Progress(args.log_format) as progress:
        outcome = await temporal.watch(handle, progress)
    progress.summary(f"{outcome['status']}", packed.rows_of(outcome))
    live.export_metrics(args)
    say(
        args,
        f"{outcome['status']}: {outcome['message']} (run {run_id}; `upgrader show {run_id}`)",
        error=bool(outcome["exit_code"]),
    )
    return int(outcome["exit_code"])


def _handle(connection: Any, record: dict[str, Any]) -> Any:
    """This run's workflow execution (a later run of the same upgrade reuses the workflow id)."""
    execution = record.get("execution")
    return connection.get_workflow_handle(
        str(record["workflow_id"]), run_id=execution if isinstance(execution, str) else None
    )


def run_record(args: argparse.Namespace, run_id: str) -> dict[str, Any] | None:
    """The run-start record of a Temporal run, or None for a local run."""
    entries = Journal.open(args.state_dir, run_id).entries()
    start = next((e for e in entries if isinstance(e, RunStart)), None)
    if start is None or start.engine != "temporal" or not isinstance(start.fields.get("temporal"), dict):
        return None
    return dict(start.fields)  # where its workflow lives: the Temporal fields, as the run-start wrote them


def handle_of(record: dict[str, Any]) -> Any:
    """The run's workflow handle (connects; refused if the server cannot be reached)."""
    import asyncio

    from upgrader.temporal import client as temporal

    async def get() -> Any:
        connection = await temporal.connect(settings.of_record(record["temporal"]))
        return _handle(connection, record)

    return asyncio.run(get())


def query(record: dict[str, Any]) -> dict[str, Any] | None:
    """The live state of the run's workflow (None if the server cannot say)."""
    import asyncio

    from temporalio.service import RPCError

    from upgrader.temporal import client as temporal

    async def ask() -> dict[str, Any] | None:
        connection = await temporal.connect(settings.of_record(record["temporal"]))
        try:
            handle = _handle(connection, record)
            state: dict[str, Any] = await temporal.live_state(connection, handle.id, handle.run_id)
        except RPCError:
            return None
        return state if state.get("run") == record.get("run") else None

    try:
        return asyncio.run(ask())
    except RefusedError:
        return None


ABORT_WAIT = 10.0  # seconds `rollback` lets an aborted run put its own hosts back before taking them over


def signal(record: dict[str, Any], decision: dict[str, Any], wait: float = 0.0) -> None:
    """Send a promote/abort decision to the run's workflow; refused if it is not that run's or has ended.

    ``wait``: then wait that long at most for the run to end (an emergency rollback after an abort).
    """
    import asyncio

    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError

    from upgrader.temporal import client as temporal

    async def send() -> None:
        connection = await temporal.connect(settings.of_record(record["temporal"]))
        handle = _handle(connection, record)
        try:
            info = await handle.describe()
            state = await handle.query("progress")
        except RPCError as exc:
            raise RefusedError(
                f"the run's workflow {handle.id} cannot be reached: {exc}", "check the Temporal server"
            ) from None
        if info.status != WorkflowExecutionStatus.RUNNING or state.get("run") != record.get("run"):
            raise RefusedError(
                f"run {record.get('run')} has already finished; nothing to {decision['kind']}",
                f"see it with `upgrader show {record.get('run')}`",
            )
        await handle.signal("decide", decision)
        deadline = asyncio.get_running_loop().time() + wait
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(RPCError):
                if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                    return
            await asyncio.sleep(0.5)

    asyncio.run(send())


def watch(args: argparse.Namespace, run_id: str) -> int:
    record = run_record(args, run_id)
    if record is None:
        raise RefusedError(f"run {run_id} is not a Temporal run", f"see it with `upgrader show {run_id}`")
    import asyncio

    async def attach() -> int:
        from upgrader.temporal import client as temporal

        connection = await temporal.connect(settings.of_record(record["temporal"]))
        return await _watch(args, _handle(connection, record), run_id)

    return asyncio.run(attach())


def is_run(args: argparse.Namespace, name: str) -> bool:
    """Does ``name`` name a Temporal run in this state directory (for `status RUN`)?"""
    try:
        return run_record(args, name) is not None
    except UpgraderError:
        return False


def live_rows(state: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [(host, dc, st, detail) for host, (st, detail, dc) in sorted(state["hosts"].items())]


def status(args: argparse.Namespace, run_id: str) -> int:
    """`upgrader status RUN`: the run's state as its workflow holds it now (else as its journal ended)."""
    from upgrader.commands.tables import print_table

    record = run_record(args, run_id)
    assert record is not None
    state = query(record) or _ended(args, run_id)
    if state is None:
        raise RefusedError(
            f"the workflow of run {run_id} cannot be asked (server unreachable) and its journal has no end yet",
            f"see the journal so far with `upgrader show {run_id}`",
        )
    outcome = state.get("outcome")
    title = (
        f"run {run_id}: {outcome['status']} (exit {outcome['exit_code']}): {outcome['message']}"
        if outcome
        else f"run {run_id}: running" + (f", waiting at gate {state['waiting']}" if state.get("waiting") else "")
    )
    if getattr(args, "format", "table") == "json":
        import json

        if outcome and packed.ROWS_PACKED in outcome:  # printed as before the result was packed: a row per host
            rows = [list(r) for r in packed.rows_of(outcome)]
            state["outcome"] = {**{k: v for k, v in outcome.items() if k != packed.ROWS_PACKED}, "rows": rows}
        print(json.dumps(state, sort_keys=True, indent=2))
    else:
        print(title)  # the table shows it on a terminal only
        print_table(
            title,
            ("host", "dc", "state", "detail"),
            live_rows(state),
            [st in ("failed", "rollback-failed", "unreachable", "held") for _, _, st, _ in live_rows(state)],
        )
    return int(outcome["exit_code"]) if outcome else 0


def abort_running(args: argparse.Namespace, component: str, operator_name: str, reason: str) -> list[str]:
    """Before an emergency rollback: abort every unfinished Temporal run of ``component`` (audited).

    Each aborted run gets ABORT_WAIT seconds to put back what it changed (per its policy), so the two do not
    work on one host at once; past that the rollback acts anyway and takes the hosts' locks over.  Best
    effort by design: a server that cannot be reached must not delay the rollback either; it is said on
    stderr, and the rollback's journal names what was aborted.
    """
    from upgrader.engine.gates import Decision, DecisionKind
    from upgrader.journal import audit, list_runs

    aborted = []
    for summary in list_runs(args.state_dir):
        if summary.component != component or summary.exit_code is not None or summary.status != "unfinished":
            continue
        record = run_record(args, summary.run_id)
        if record is None:
            continue
        why = f"emergency rollback: {reason}"
        decision = Decision(
            DecisionKind.ABORT, None, operator_name, why, datetime.now(UTC).isoformat(timespec="milliseconds")
        )
        try:
            signal(record, decision.to_dict(), wait=ABORT_WAIT)
        except RefusedError as exc:
            print(f"warning: could not abort Temporal run {summary.run_id}: {exc}", file=sys.stderr)
            continue
        audit(args.state_dir, action="abort", run=summary.run_id, gate=None, operator=operator_name, reason=why)
        say(args, f"aborted Temporal run {summary.run_id} of {component} before rolling back")
        aborted.append(summary.run_id)
    return aborted


def _ended(args: argparse.Namespace, run_id: str) -> dict[str, Any] | None:
    """A finished run's state as its journal's run-end holds it (the server may have dropped its history)."""
    entries = Journal.open(args.state_dir, run_id).entries()
    end = next((e for e in reversed(entries) if isinstance(e, RunEnd)), None)
    if end is None:
        return None
    hosts = {h: [i.state, i.detail, "-"] for h, i in end.hosts.items()}
    outcome = {"status": end.status, "exit_code": end.exit_code, "message": end.message}
    return {"run": run_id, "waiting": None, "outcome": outcome, "hosts": hosts, "events": [], "abort": None}
