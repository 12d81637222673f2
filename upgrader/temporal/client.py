"""The controller's side: connect, start a run (one per component and inventory), signal it, watch it."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import sys
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from upgrader.defaults import CONNECT_SECONDS
from upgrader.defaults import WATCH_POLL as POLL
from upgrader.engine.progress import Listener, replay
from upgrader.errors import ExitCode, RefusedError, UpgraderError
from upgrader.temporal import limits, search
from upgrader.temporal.messages import Start
from upgrader.temporal.plan_store import PlanStoreError
from upgrader.temporal.settings import CONTROL_QUEUE, Settings


class RunFailed(UpgraderError):
    """The workflow itself failed (a bug, or it was terminated): where the hosts are is not known here."""

    exit_code = ExitCode.ROLLBACK_FAILED
    reference = "temporal-run-failed"


def plaintext_warning(settings: Settings) -> str | None:
    """The warning for a server reached without TLS anywhere but on this machine, else None."""
    if settings.tls:
        return None
    host = settings.address.rpartition(":")[0].strip("[]") or settings.address
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return (
        f"the Temporal server {settings.address} is reached without TLS: anyone on the path can read the "
        "runs' plans and signals and, without mutual TLS, start, signal and abort runs in the namespace "
        "(README: Engines, the trust model); give --temporal-tls-ca (and --temporal-tls-cert/-key)"
    )


async def connect(settings: Settings) -> Client:
    warning = plaintext_warning(settings)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    tls: TLSConfig | bool = False
    if settings.tls:  # without a CA bundle: the system's roots (a hosted server, an API key)
        tls = TLSConfig(
            server_root_ca_cert=settings.tls_ca.read_bytes() if settings.tls_ca else None,
            domain=settings.tls_server_name,
            client_cert=settings.tls_cert.read_bytes() if settings.tls_cert else None,
            client_private_key=settings.tls_key.read_bytes() if settings.tls_key else None,
        )
    api_key = settings.read_api_key()
    try:
        return await asyncio.wait_for(
            Client.connect(settings.address, namespace=settings.namespace, tls=tls, api_key=api_key),
            CONNECT_SECONDS,
        )
    except (RPCError, RuntimeError, OSError, TimeoutError) as exc:
        raise RefusedError(
            f"cannot reach the Temporal server at {settings.address}: {_short(exc)}",
            "check --temporal-address (or UPGRADER_TEMPORAL_ADDRESS) and that the server runs; nothing was changed",
        ) from None


def workflow_id(component: str, inventory: str) -> str:
    """One upgrade of a component per inventory at a time, fleet-wide: the id is the lock."""
    return "upgrade-" + re.sub(r"[^A-Za-z0-9._-]", "_", f"{component}-{inventory}")


async def start(
    client: Client, wid: str, start: Start, labels: search.Labels | None = None
) -> WorkflowHandle[Any, Any]:
    """Start the run's workflow (refused over the payload budget, or if the upgrade already runs).

    ``labels``: its search attributes, so every controller can list it; a server that does not have
    them registered gets a warning and the run starts without them (finding it is not worth an upgrade)."""
    check_start(client, start)
    try:
        try:
            return await _start(client, wid, start, labels)
        except RPCError as exc:
            if labels is None or exc.status != RPCStatusCode.INVALID_ARGUMENT or "search attribute" not in str(exc):
                raise
            print(f"warning: {_unregistered(exc)}", file=sys.stderr)
            return await _start(client, wid, start, None)
    except WorkflowAlreadyStartedError:
        holder = await running_run(client, wid)
        raise RefusedError(
            f"another controller is already running this upgrade: workflow {wid}"
            + (f" (run {holder})" if holder else ""),
            f"watch it with `upgrader watch {holder or 'RUN'}`, or abort it first",
        ) from None


async def _start(client: Client, wid: str, start: Start, labels: search.Labels | None) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        "upgrade",
        start,
        id=wid,
        task_queue=CONTROL_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        search_attributes=labels.attributes() if labels else None,
        memo=labels.memo() if labels else None,
    )


def _unregistered(exc: RPCError) -> str:
    return (
        f"the Temporal server refused the run's search attributes ({_short(exc)}): it starts without them, "
        "so `upgrader runs --engine temporal` will not list it; register them once per namespace: "
        + "; ".join(f"temporal operator search-attribute create --name {n} --type {t}" for n, t in _pairs())
    )


def _pairs() -> list[tuple[str, str]]:
    return [(name, kind) for name, _, kind in (pair.partition("=") for pair in search.registration())]


def check_start(client: Client, start: Start) -> int:
    """The start input's size as the client will send it; refused over limits.START_BUDGET (the payload
    budget: the plan travels by reference, so a start is a few KiB at any fleet size) before the server
    is asked."""
    size = client.data_converter.payload_converter.to_payloads([start])[0].ByteSize()
    hint = "shorten what the run carries (its --overrides path, argv), or use --engine local"
    limits.check_payload("the run's start input", size, hint, budget=limits.START_BUDGET)
    return size


async def running_run(client: Client, wid: str) -> str | None:
    try:
        state = await client.get_workflow_handle(wid).query("progress")
    except RPCError:
        return None
    run = state.get("run") if isinstance(state, dict) else None
    return run if isinstance(run, str) else None


async def progress(client: Client, wid: str, since: int = 0, run_id: str | None = None) -> dict[str, Any]:
    """A workflow's `progress` from ``since``, every page of it (each answer under limits.QUERY_BUDGET)."""
    handle = client.get_workflow_handle(wid, run_id=run_id)
    state: dict[str, Any] = await handle.query("progress", since)
    while state.get("more"):
        page = await handle.query("progress", state["cursor"])
        page["hosts"] = {**state["hosts"], **page["hosts"]}
        page["events"] = state["events"] + page["events"]
        state = page
    return state


async def live_state(client: Client, wid: str, run_id: str | None = None) -> dict[str, Any]:
    """The run's whole live state: its workflow's, with the hosts of the child that runs some now."""
    state = await progress(client, wid, 0, run_id)
    child = (state.get("tree") or {}).get("child")
    if child:
        with contextlib.suppress(RPCError, WorkflowQueryFailedError):  # it just ended: the parent has its hosts
            state["hosts"].update((await progress(client, child))["hosts"])
    return state


async def watch(handle: WorkflowHandle[Any, Any], progress_view: Listener) -> dict[str, Any]:
    """Mirror the run's state into ``progress_view`` until it ends; its outcome (the workflow's result).

    It asks the run's workflow for what changed since it last asked, and the child workflow running hosts
    now (hosts_workflow.py) too: the parent takes the child's events over when it ends, marked with the
    child's id, and those already shown are not shown twice."""
    result = asyncio.ensure_future(handle.result())
    seen: dict[str, tuple[str, str]] = {}
    told = ""
    cursors: dict[str, int] = {}  # workflow id → how far its `progress` was read
    followed: set[str] = set()

    def show(state: dict[str, Any]) -> None:
        for host, (st, detail, _dc) in state["hosts"].items():
            if seen.get(host) != (st, detail):
                seen[host] = (st, detail)
                progress_view.host_state(host, st, detail)
        for kind, text, host, *source in state["events"]:
            # A child's event the parent took over: shown unless this watch saw it while following the child
            # (the child's cursor then, against how far this watch read the child).
            child = source[0] if source else ""
            at = source[1] if len(source) > 1 else None
            if not (child and child in followed and (at is None or at <= cursors.get(child, 0))):
                replay(progress_view, kind, text, host or None)

    def read_to(wid: str, state: dict[str, Any]) -> None:
        # Never back: an execution that has just continued-as-new can answer before it has taken over its
        # events and cursor (cursor 0), and asking again from 0 would show them all a second time.
        cursors[wid] = max(cursors.get(wid, 0), int(state["cursor"]))

    while True:
        finished = result.done()
        try:
            state = await progress(handle._client, handle.id, cursors.get(handle.id, 0), handle.run_id)
            read_to(handle.id, state)
            show(state)
            child = (state.get("tree") or {}).get("child")
            if child:
                followed.add(child)
                mine = await progress(handle._client, child, cursors.get(child, 0))
                read_to(child, mine)
                show(mine)
        except RPCError:
            pass  # the server is away for a moment (a restart), or the child just ended: the run is not
        except WorkflowQueryFailedError as exc:
            # The control worker could not run the workflow to answer (a build that cannot replay the run:
            # README, upgrading the workers), or the child just ended.  The run is not failed: it waits for a
            # worker that can.
            why = _short(exc)
            if why != told and "not found" not in why.lower():
                told = why
                progress_view.wait(f"the run's control worker cannot answer ({why}): the run waits for one that can")
        if finished and isinstance(result.exception(), RPCError):
            # The server went away (a restart): the run did not; wait for it again.
            await asyncio.sleep(POLL)
            result = asyncio.ensure_future(handle.result())
            continue
        if finished:
            break
        await asyncio.wait({result}, timeout=POLL)
    try:
        outcome: dict[str, Any] = result.result()
    except WorkflowFailureError as exc:
        if isinstance(exc.cause, ApplicationError) and exc.cause.type == PlanStoreError.__name__:
            raise PlanStoreError(  # the plan never loaded: nothing was recorded, locked or run
                f"the run's workflow {handle.id} could not read its plan: {_short(exc.cause)}",
                "nothing was locked or run; `apply` again once the control worker's artifact store holds the plan",
            ) from None
        raise RunFailed(
            f"the run's workflow {handle.id} failed: {_short(exc.cause or exc)}",
            "see the worker logs; the hosts' locks say where the run stopped",
        ) from None
    return outcome


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


async def listed(client: Client, last: int) -> list[dict[str, Any]]:
    """The newest ``last`` runs in the namespace, from every controller (a visibility query), oldest first."""
    try:
        return await _listed(client, last)
    except RPCError as exc:
        raise RefusedError(
            f"the Temporal server cannot list runs by their search attributes: {_short(exc)}",
            "register them once per namespace (README: Engines, finding runs): "
            + "; ".join(f"temporal operator search-attribute create --name {n} --type {t}" for n, t in _pairs()),
        ) from None


async def _listed(client: Client, last: int) -> list[dict[str, Any]]:
    found = []
    async for execution in client.list_workflows(search.QUERY, limit=last):
        attributes = execution.typed_search_attributes
        memo = await execution.memo()
        status = execution.status
        state = attributes.get(search.STATUS) or "?"
        if status is not None and status not in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED):
            state = status.name.lower().replace("_", "-")  # terminated, timed-out: the workflow never said
        found.append(
            {
                "run": str(memo.get("run", "?")),
                "component": attributes.get(search.COMPONENT),
                "version": attributes.get(search.VERSION),
                "datacenters": list(attributes.get(search.DATACENTERS) or []),
                "phase": attributes.get(search.PHASE),
                "status": state,
                "operator": attributes.get(search.OPERATOR),
                "workflow_id": execution.id,
                "execution": execution.run_id,
                "started": execution.start_time.isoformat() if execution.start_time else None,
            }
        )
    return found[::-1]
