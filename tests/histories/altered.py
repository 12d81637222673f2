"""Deliberately changed copies of the upgrade workflow, for the replay test (tests/unit/test_temporal_replay.py).

``Unversioned`` adds a step before the run's first record, as a careless change would: replaying a run that
started on the old code must fail with a non-determinism error.  ``Patched`` adds the same step under
``workflow.patched(...)``, the rule for workflow changes (upgrader/temporal/worker.py, WORKFLOWS): a run that
started on the old code replays (the patch is false for it); a new run takes the new step and records the
patch's marker so that its own replays take it too.  Both keep the workflow's name: a worker would run them
for the runs in flight.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from upgrader.temporal.messages import Notice, Start
    from upgrader.temporal.settings import CONTROL_QUEUE
    from upgrader.temporal.workflow import UpgradeWorkflow

PATCH = "replay-test-notice-before-start"


async def _extra_step(start: Start) -> None:
    """A new activity (a webhook notice) before anything the old code did."""
    await workflow.execute_activity(
        "notify",
        Notice("starting", "", "", start.run_id, {}),
        task_queue=CONTROL_QUEUE,
        start_to_close_timeout=timedelta(seconds=10),
    )


@workflow.defn(name="upgrade")
class Unversioned(UpgradeWorkflow):
    @workflow.run
    async def run(self, start: Start) -> dict[str, Any]:
        await _extra_step(start)
        return await super().run(start)


@workflow.defn(name="upgrade")
class Patched(UpgradeWorkflow):
    @workflow.run
    async def run(self, start: Start) -> dict[str, Any]:
        if workflow.patched(PATCH):
            await _extra_step(start)
        return await super().run(start)
