"""A parent, a child and a continue-as-new: the shape of a run once the tree of workflows lands (issue 27),
small enough to check that the capture (tests/temporal_harness.histories) saves every execution of a run
and that such histories replay (tests/unit/test_temporal_replay.py)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow


@workflow.defn(name="probe-child")
class ProbeChild:
    @workflow.run
    async def run(self, left: int) -> int:
        await workflow.sleep(timedelta(milliseconds=10))
        if left > 0:
            workflow.continue_as_new(left - 1)
        return 7


@workflow.defn(name="probe-parent")
class ProbeParent:
    @workflow.run
    async def run(self, links: int) -> int:
        result: int = await workflow.execute_child_workflow(
            ProbeChild.run, links, id=f"{workflow.info().workflow_id}/hosts-1"
        )
        return result
