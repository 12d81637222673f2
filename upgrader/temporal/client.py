"""The controller's side: connect, start a run (one per component and inventory), signal it, watch it."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import sys
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, TLSConfig

from upgrader.defaults import CONNECT_SECONDS
from upgrader.defaults import WATCH_POLL as POLL
from upgrader.engine.progress import Listener, replay
from upgrader.errors import ExitCode, RefusedError, UpgraderError
from upgrader.temporal.messages import Start
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
    if settings.tls:
        tls = TLSConfig(
            server_root_ca_cert=settings.tls_ca.read_bytes() if settings.tls_ca else None,
            client_cert=settings.tls_cert.read_bytes() if settings.tls_cert else None,
            client_private_key=settings.tls_key.read_bytes() if settings.tls_key else None,
        )
    try:
        return await asyncio.wait_for(
            Client.connect(settings.address, namespace=settings.namespace, tls=tls), CONNECT_SECONDS
        )
    except (RPCError, RuntimeError, OSError, TimeoutError) as exc:
        raise RefusedError(
            f"cannot reach the Temporal server at {settings.address}: {_short(exc)}",
            "check --temporal-address (or UPGRADER_TEMPORAL_ADDRESS) and that the server runs; nothing was changed",
        ) from None


def workflow_id(component: str, inventory: str) -> str:
    """One upgrade of a component per inventory at a time, fleet-wide: the id is the lock."""
    return "upgrade-" + re.sub(r"[^A-Za-z0-9._-]", "_", f"{component}-{inventory}")


async def start(client: Client, wid: str, start: Start) -> WorkflowHandle[Any, Any]:
    try:
        return await client.start_workflow(
            "upgrade",
            start,
            id=wid,
            task_queue=CONTROL_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        holder = await running_run(client, wid)
        raise RefusedError(
            f"another controller is already running this upgrade: workflow {wid}"
            + (f" (run {holder})" if holder else ""),
            f"watch it with `upgrader watch {holder or 'RUN'}`, or abort it first",
        ) from None


async def running_run(client: Client, wid: str) -> str | None:
    try:
        state = await client.get_workflow_handle(wid).query("progress")
    except RPCError:
        return None
    run = state.get("run") if isinstance(state, dict) else None
    return run if isinstance(run, str) else None


async def watch(handle: WorkflowHandle[Any, Any], progress: Listener) -> dict[str, Any]:
    """Mirror the run's state into ``progress`` until it ends; its outcome (the workflow's result)."""
    result = asyncio.ensure_future(handle.result())
    seen_events = 0
    seen: dict[str, tuple[str, str]] = {}
    while True:
        finished = result.done()
        try:
            state = await handle.query("progress")
        except RPCError:
            state = None  # the server is away for a moment (a restart): the run is not
        if isinstance(state, dict):
            for host, (st, detail, _dc) in state["hosts"].items():
                if seen.get(host) != (st, detail):
                    seen[host] = (st, detail)
                    progress.host_state(host, st, detail)
            for kind, text, host in state["events"][seen_events:]:
                replay(progress, kind, text, host or None)
            seen_events = len(state["events"])
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
        raise RunFailed(
            f"the run's workflow {handle.id} failed: {_short(exc.cause or exc)}",
            "see the worker logs; the hosts' locks say where the run stopped",
        ) from None
    return outcome


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
