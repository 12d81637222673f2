"""`upgrader worker`: poll a datacenter's task queue (its hosts' activities) and/or the control queue.

A datacenter worker runs inside that datacenter (or reaches it through the inventory's jump host, as
any controller does): its SSH fan-out starts there.  The control worker runs the workflows and writes
the journals into its state directory, at the desk; run one (or more sharing that directory).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from upgrader.defaults import WORKER_GRACE
from upgrader.engine.endpoints import endpoints
from upgrader.engine.pool import Pool
from upgrader.errors import RefusedError
from upgrader.loading.inputs import Loaded
from upgrader.models.inventory import Inventory
from upgrader.planning import signing
from upgrader.temporal import limits
from upgrader.temporal.activities import HostWork
from upgrader.temporal.control import Control
from upgrader.temporal.hosts_workflow import HostsWorkflow
from upgrader.temporal.settings import CONTROL_QUEUE, queue
from upgrader.temporal.workflow import UpgradeWorkflow
from upgrader.transport.base import Endpoint, Timeouts, Transport

# The workflow's imports are passed through (workflow.py), and so is what they import on first use
# (pydantic building the plan's models): pure code, loaded once per worker rather than per run.
GRACE = timedelta(seconds=WORKER_GRACE)
PASSED_THROUGH = ("upgrader", "pydantic", "pydantic_core", "annotated_types", "packaging", "yaml")

# Every workflow class the control worker runs, in ONE place: the worker registers them, and the replay test
# (tests/unit/test_temporal_replay.py) replays the saved histories (tests/histories/) against them in CI.
# The rule for changing their code (README: Engines, upgrading the workers): a change that alters the commands
# a run already in flight has recorded (an activity, timer, child workflow or search-attribute update added,
# removed or reordered before a point such a run has passed) goes under ``if workflow.patched("<change-id>"):``
# (the old path kept in the else branch until no run started before it can still be running; then
# ``workflow.deprecate_patch``).  A query, what an activity does, code no run in flight has reached: no patch.
WORKFLOWS: tuple[type, ...] = (UpgradeWorkflow, HostsWorkflow)


def sandbox() -> SandboxedWorkflowRunner:
    """The workflows' sandbox, as the control worker and the replayer both run them."""
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH))


@dataclass(frozen=True)
class Rate:
    """Host programs started per second: per datacenter queue (all its workers; the server holds it) and,
    optionally, per worker.  None: no limit."""

    queue: float | None = limits.QUEUE_ACTIVITIES_PER_SECOND
    worker: float | None = None


def workers(
    client: Client,
    inventory: Loaded[Inventory],
    *,
    datacenters: list[str],
    control: bool,
    state_dir: Path,
    artifacts: Path | None = None,
    parallel: int = 32,
    timeouts: Timeouts | None = None,
    factory: Callable[[Endpoint], Transport] | None = None,
    quiet: bool = False,
    fail_on_bug: bool = False,
    plan_key: bytes | None = None,
    rate: Rate | None = None,
) -> list[Worker]:
    """The workers for these queues.  ``fail_on_bug`` (tests): an exception in workflow code fails the run
    instead of retrying its task until a fixed worker is deployed (Temporal's default, kept for production).
    A datacenter worker needs ``plan_key``: it runs only plans the controller signed with it.  ``artifacts``:
    the artifact store (release tarballs and stored plans) of every worker here, the control worker's too;
    None: the path the controller gave the run."""
    out = []
    if datacenters:
        if plan_key is None:
            raise RefusedError(
                "a datacenter worker runs only signed plans, and has no plan key",
                f"give it the controllers' key: --plan-key FILE or ${signing.ENV}",
            )
        pool = Pool(endpoints(inventory.model, inventory.path), factory=factory, timeouts=timeouts, parallel=parallel)
        hosts = HostWork(inventory, pool, artifacts=artifacts, quiet=quiet, plan_key=plan_key)
        # SIGTERM lets a host program in flight finish (a worker stopped by systemd leaves no host mid-step).
        out += [
            Worker(
                client,
                task_queue=queue(dc),
                activities=hosts.all(),
                max_concurrent_activities=parallel,
                activity_task_poller_behavior=PollerBehaviorSimpleMaximum(maximum=activity_pollers(parallel)),
                graceful_shutdown_timeout=GRACE,
                max_task_queue_activities_per_second=(rate or Rate()).queue,
                max_activities_per_second=(rate or Rate()).worker,
            )
            for dc in datacenters
        ]
    if control:
        out.append(
            Worker(
                client,
                task_queue=CONTROL_QUEUE,
                workflows=list(WORKFLOWS),
                activities=Control(state_dir, inventory, client, store=artifacts).all(),
                workflow_runner=sandbox(),
                workflow_failure_exception_types=[Exception] if fail_on_bug else [],
            )
        )
    return out


def activity_pollers(parallel: int) -> int:
    """Polls a datacenter worker keeps open on its queue: the SDK's 5 take a wave's activities about 5 at a
    time off the server (bench/scale.py --engine: 127 activities scheduled at once started over ~20 s on a
    loaded 2-core machine); one per 4 host programs in flight, at least the SDK's 5 and at most 32."""
    return max(5, min(32, parallel // 4))


def executor_threads(parallel: int, datacenters: int) -> int:
    """Threads for the activities' blocking work: every activity a datacenter worker may run at once
    (``parallel`` per queue) holds one (activities.beating), plus a few for the plan reads."""
    return max(1, parallel) * max(1, datacenters) + 4


def size_executor(parallel: int, datacenters: int) -> None:
    """Give the running loop a default executor as large as the activities in flight.

    The activities run their host programs through ``asyncio.to_thread``, i.e. the loop's default
    executor, which Python sizes min(32, CPUs + 4): 6 threads on 2 cores, so a worker with
    ``--parallel 128`` ran 6 host programs at a time (bench/scale.py --engine, 256 real hosts: an
    apply wave of 127 hosts took 34 s against the local engine's 12 s, the host-ends evenly spaced).
    """
    threads = executor_threads(parallel, datacenters)
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=threads, thread_name_prefix="upgrader-activity")
    )


async def serve(running: list[Worker]) -> None:
    """Run until SIGTERM/SIGINT; activities in flight are given the graceful-shutdown time to end."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.ensure_future(w.run()) for w in running]
    await stop.wait()
    await asyncio.gather(*(w.shutdown() for w in running), return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)
