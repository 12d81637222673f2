"""The workflows' one way to the run's plan: ``await load(ref, artifacts)``, from the control worker in parts.

The start input carries a PlanRef, not the plan (temporal/plan_store.py).  ``load`` asks the control
worker's ``plan_part`` activity for every part at once (each at most limits.PAYLOAD_BUDGET // 2 bytes
of the gzip file, so each result stays under the payload budget), joins them, inflates them (bounded
by the reference's size) and checks the sha256 here, in the workflow, before parsing: a control worker
that served other bytes is refused as a datacenter worker refuses a file.  The parts are activity
results, so a replay reads them from the history and never asks again.

Deterministic: no I/O here, only activities; zlib and hashlib are pure.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from upgrader import defaults
    from upgrader.models.plan import Plan
    from upgrader.temporal import limits, plan_store
    from upgrader.temporal.messages import PlanPart, PlanRef
    from upgrader.temporal.settings import CONTROL_QUEUE

PART_SECONDS = timedelta(seconds=60)  # reading ≤ 256 KiB of a local file, verified: seconds at most
RETRY = RetryPolicy(  # the control worker away for a moment; its refusals are not retried (non-retryable)
    initial_interval=timedelta(seconds=defaults.RETRY_FIRST),
    backoff_coefficient=defaults.RETRY_BACKOFF,
    maximum_interval=timedelta(seconds=defaults.RETRY_MAX_INTERVAL),
    maximum_attempts=defaults.RETRY_ATTEMPTS,
)
PARSED_KEPT = 4  # plans of runs in flight on one control worker (a 10,000-host plan: ~50 MB parsed)
_PARSED: OrderedDict[str, Plan] = OrderedDict()
_LOCK = threading.Lock()
REFUSED = plan_store.PlanStoreError.__name__  # the ApplicationError type of a plan refused, here or by a worker


async def load(ref: PlanRef, artifacts: str) -> Plan:
    """The plan ``ref`` names, read from the control worker's artifact store (``artifacts``: the store the
    controller named, used where the control worker has no --artifacts of its own), verified here.

    Raises a non-retryable ApplicationError (type ``PlanStoreError``) when the reference is malformed,
    the control worker does not hold the plan, or what it served is not the plan: the run fails before
    anything is recorded or run."""
    try:
        plan_store.check_ref(ref)
    except plan_store.PlanStoreError as exc:
        raise ApplicationError(str(exc), type=REFUSED, non_retryable=True) from None
    if ref.parts > limits.PENDING_BUDGET:  # check_ref bounds it far below (128 MiB / 256 KiB = 512)
        raise ApplicationError(f"a plan of {ref.parts} parts: refused", type=REFUSED, non_retryable=True)
    try:
        parts = await _parts(ref, artifacts)
    except ActivityError as exc:  # the control worker does not hold it, or refused what it holds
        cause = getattr(exc.cause, "message", None) or exc.cause or exc
        raise ApplicationError(f"plan {ref.sha256[:12]}…: {cause}", type=REFUSED, non_retryable=True) from None
    for index, part in enumerate(parts):
        start, end = plan_store.part_range(ref, index)
        if not isinstance(part, bytes) or len(part) != end - start:
            raise ApplicationError(
                f"the control worker's part {index} of plan {ref.sha256[:12]}… is not its {end - start} bytes: refused",
                type=REFUSED,
                non_retryable=True,
            )
    try:
        text = plan_store.inflate(b"".join(parts), ref, f"the control worker's copy of plan {ref.sha256[:12]}…")
    except plan_store.PlanStoreError as exc:
        raise ApplicationError(str(exc), type=REFUSED, non_retryable=True) from None
    return parsed(ref.sha256, text)


def parsed(sha256: str, text: str) -> Plan:
    """``text`` (verified: its sha256 is ``sha256``) as a Plan, parsed once per worker process.

    Every execution of a run's tree loads the plan (the parent, each `hosts` child, each continue-as-new),
    and parsing is the costly part of its first workflow task: ~0.5 s of CPU for a 10,000-host plan
    (bench/results/plan_10k-2026-12-05.md), which on a loaded desk nears the SDK's 2 s deadlock limit.  A
    Plan is immutable and the text is verified against its hash, so the same hash is the same plan: the
    history (the parts, the activities) is the same whether or not the parse was done before."""
    with _LOCK:  # workflow tasks run on several threads
        plan = _PARSED.get(sha256)
        if plan is not None:
            _PARSED.move_to_end(sha256)
            return plan
    plan = Plan.from_json(text)
    with _LOCK:
        _PARSED[sha256] = plan
        while len(_PARSED) > PARSED_KEPT:
            _PARSED.popitem(last=False)
    return plan


async def _parts(ref: PlanRef, artifacts: str) -> list[bytes]:
    """Every part at once: at most a few (a 10,000-host inventory's plan is ~80 KB gzipped, one part)."""
    got = await asyncio.gather(
        *(
            workflow.execute_activity(
                "plan_part",
                PlanPart(ref, index, artifacts),
                result_type=bytes,
                task_queue=CONTROL_QUEUE,
                start_to_close_timeout=PART_SECONDS,
                retry_policy=RETRY,
            )
            for index in range(ref.parts)
        )
    )
    return list(got)
