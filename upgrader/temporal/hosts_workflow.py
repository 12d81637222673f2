"""The `hosts` child workflow: one phase's hosts (or one rollback's), with a sliding window and continue-as-new.

The run's workflow (workflow.py) hands every RunHosts and RollBack of its policy to a child of this
kind, one at a time, and waits for it: while the child runs, its policy (built from the plan and the
parent's PolicyState.snapshot) is the run's one authority for redundancy groups, budgets, halts and
aborts.  It starts ``policy.host_program(h)`` (or ``rollback_program(h)``) for its hosts in order, at
most ``window`` started and not ended (Temporal's ``batch_sliding_window``), through the same
interpreter as the parent (interpreter.py).

When Temporal suggests it (``is_continue_as_new_suggested``), or its history passes
limits.CAN_EVENTS, it starts no new program, lets those in flight end, waits for its handlers,
writes its records, and continues-as-new with the hosts left and the policy's state: an abort signal
that came before is carried in the snapshot (heard) or in ``abort`` (not yet heard).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from upgrader.engine.gates import Decision
    from upgrader.engine.host_actions import HostRun
    from upgrader.engine.policy import RunPolicy
    from upgrader.engine.policy_state import Program
    from upgrader.temporal import limits
    from upgrader.temporal.interpreter import Interpreter
    from upgrader.temporal.messages import Hosts, HostsDone

PHASE, ROLLBACK = "phase", "rollback"
# workflow.patched id: a child starts at most limits.STARTS_PER_TASK programs a workflow task (runs that
# started before it replay as they ran: their children started a whole window in one task).
PACED = "paced-starts"


@workflow.defn(name="hosts")
class HostsWorkflow(Interpreter):
    def __init__(self) -> None:
        super().__init__()
        self._task_at = 0  # the history length of the workflow task that started the last program
        self._starts = 0  # programs started in it

    @workflow.run
    async def run(self, work: Hosts) -> HostsDone:
        self.start = work.start
        # Before the first await: a `progress` query that comes while the plan loads (a watcher following
        # this child just after its continue-as-new) sees the events and cursor carried over, not none.
        self._seq, self.events, self.cursor = work.seq, list(work.events), work.cursor
        self.plan = plan = await self.load_plan()
        self.hosts = {h.host: HostRun(h) for h in plan.hosts}
        self.policy = RunPolicy(plan, self.hosts, run_id=work.start.run_id, host_seconds=work.start.host_seconds)
        self.policy.restore(work.snapshot)
        self.asked_abort = Decision.from_dict(work.abort) if work.abort else None
        started = await self.slide(work)
        await self.flush()
        events = self.events
        if started < len(work.hosts):
            await workflow.wait_condition(workflow.all_handlers_finished)
            unheard = self.unheard_abort()
            workflow.continue_as_new(
                dataclasses.replace(
                    work,
                    next=started,
                    seq=self._seq,
                    snapshot=self.policy.snapshot(work.hosts),
                    abort=unheard.to_dict() if unheard else None,
                    events=events,
                    cursor=self.cursor,
                    runs=work.runs + 1,
                )
            )
        return HostsDone(self.policy.snapshot(work.hosts), self._seq, tail(events), work.runs)

    async def slide(self, work: Hosts) -> int:
        """Start ``work.hosts[work.next:]`` in a sliding window until they all ran or a continue-as-new is
        due; every program started has ended on return.  How many of ``work.hosts`` were started."""
        running: set[asyncio.Future[None]] = set()
        started = work.next

        def due() -> bool:  # each run starts one program at least: a continue-as-new always makes progress
            return started > work.next and self.history_full()

        while started < len(work.hosts) and not due():
            await workflow.wait_condition(lambda: len(running) < work.window or due())
            if due():
                break
            if running and self.task_full() and workflow.patched(PACED):
                await self.next_task(running)
                continue
            task = asyncio.ensure_future(self.drive(self.program(work.kind, work.hosts[started])))
            running.add(task)
            task.add_done_callback(running.discard)
            started += 1
        while running:
            await asyncio.gather(*running)
        return started

    def task_full(self) -> bool:
        """Has this workflow task started limits.STARTS_PER_TASK programs already (counting this one)?

        A workflow task that starts a whole window at once (409 programs, each stepped, its Work built and
        its activity scheduled) was measured over the SDK's 2 s deadlock limit on a loaded desk
        (bench/results/temporal_scale-2026-12-05-1000-*.md: 3 of 10 runs at 1,000 hosts).  A task over it is
        failed and replayed, and the replay of that same task costs as much: the run stalled for good.  The
        history length tells the tasks apart, the same on replay as when it ran."""
        at = workflow.info().get_current_history_length()
        if at != self._task_at:
            self._task_at, self._starts = at, 0
        self._starts += 1
        return self._starts > limits.STARTS_PER_TASK

    @staticmethod
    async def next_task(running: set[asyncio.Future[None]]) -> None:
        """Until the next workflow task: the programs just started bring it (an activity ends, a timer
        fires).  No timer of our own: a 10 ms one here made the 1,000-host rollback take 21.7 s against
        10 s (each pause cost ~1 s on the dev server).  Or until none runs: programs that ended at once (a
        halted phase's) brought nothing, and cost little."""
        at = workflow.info().get_current_history_length()
        await workflow.wait_condition(lambda: not running or workflow.info().get_current_history_length() != at)

    def program(self, kind: str, host: str) -> Program[None]:
        assert self.policy is not None
        return self.policy.rollback_program(host) if kind == ROLLBACK else self.policy.host_program(host)

    @staticmethod
    def history_full() -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= limits.CAN_EVENTS


def tail(events: list[list[Any]]) -> list[list[Any]]:
    """The newest limits.CHILD_EVENTS events, each text at most limits.EVENT_TEXT characters: what the run's
    workflow takes over for `watch` from a child that ended (its history holds every child's result; a
    watcher following the child saw them all already, and the journal has every record)."""
    return [
        [cursor, kind, text if len(text) <= limits.EVENT_TEXT else text[: limits.EVENT_TEXT - 1] + "…", *rest]
        for cursor, kind, text, *rest in events[-limits.CHILD_EVENTS :]
    ]
