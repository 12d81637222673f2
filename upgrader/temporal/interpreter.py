"""What both workflows of a run share: the interpreter of the run policy's actions (engine/policy.py).

As Temporal's ``dsl`` sample interprets a program of activities, a workflow steps the policy's programs
and carries out each action they yield: a host's program, a round of checks, a rollback are activities
on the host's datacenter queue (activities.py); waits are workflow timers; promotes and aborts are
signals; window admission, notices and the journal are activities on the control worker.  It decides
nothing: every choice is the policy's.  The run's workflow (workflow.py) and its children that carry
out a phase's or a rollback's hosts (hosts_workflow.py) are both this interpreter; only one of them
holds the policy's state at a time (the parent waits while a child runs).

Journal records are queued and written in batches by one ``record`` activity (``flush``): an activity's
own records come back in its result and go out together; a record the policy yields is written before
the program takes its next step (a mutating step is journaled before it runs).  Measured on a 40-host run
with fake hosts (tests/unit/test_temporal_tree.py, ``test_history_events_per_upgraded_host``, counting the
events of the parent's and every child's history): 13.7 history events per upgraded host, about 2
activities and 2 workflow tasks each (one record activity per record, before: ~42 for ordergw).

Deterministic by construction: no clock but workflow.now(), no I/O, upgrader modules passed through.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, TimeoutType
from temporalio.exceptions import TimeoutError as TemporalTimeout

with workflow.unsafe.imports_passed_through():
    from upgrader import defaults
    from upgrader.engine import policy_messages as m
    from upgrader.engine.gates import Decision, DecisionKind
    from upgrader.engine.host_actions import Back, HandedOver, HostRun, Ran, program_steps
    from upgrader.engine.policy import RunPolicy
    from upgrader.engine.policy_state import Program, pack_hosts, step, unpack_hosts
    from upgrader.models.plan import Plan
    from upgrader.temporal import limits, plan_ref
    from upgrader.temporal.messages import Admission, Done, Notice, PlanRef, Records, Start, Work
    from upgrader.temporal.settings import CONTROL_QUEUE, queue
    from upgrader.vocabulary import Event, HostState

HEARTBEAT = timedelta(seconds=defaults.ACTIVITY_HEARTBEAT)  # a SIGKILLed worker is noticed within this
ONCE = RetryPolicy(maximum_attempts=1)  # a host program: never run twice (the policy's RunPolicy.lost)
REPEATABLE = RetryPolicy(
    initial_interval=timedelta(seconds=defaults.RETRY_FIRST),
    backoff_coefficient=defaults.RETRY_BACKOFF,
    maximum_interval=timedelta(seconds=defaults.RETRY_MAX_INTERVAL),
    maximum_attempts=defaults.RETRY_ATTEMPTS,
)
# A batch the control worker refuses (control.py raises ValueError: not a journal event, not this run's) is
# refused again on every attempt: the workflow fails at once instead of retrying for minutes.
RECORDING = dataclasses.replace(REPEATABLE, non_retryable_error_types=["ValueError"])
SKIPPED_EVENTS = {Event.HOST_BEGIN}  # the workflow records it itself, before the activity runs
T = TypeVar("T")


class Interpreter:
    """The state a workflow of the run keeps, the actions it carries out, its signal and queries."""

    def __init__(self) -> None:
        self.start: Start | None = None
        self.plan: Plan | None = None
        self.hosts: dict[str, HostRun] = {}
        self.policy: RunPolicy | None = None
        self.asked_abort: Decision | None = None  # an abort signal the policy has not heard yet
        self.promotes: dict[str, Decision] = {}
        self.waiting: str | None = None
        self.events: list[list[Any]] = []  # [cursor, kind, text, host, source, at] for `watch`, newest kept
        self.changed: dict[str, int] = {}  # host → the `progress` cursor at its last change
        self.cursor = 0  # counts host changes: `progress(since)` sends the hosts changed after ``since``
        self.outcome: dict[str, Any] | None = None
        self.moves = 0  # steps of the policy's programs: a program waiting for a slot waits for one
        self._seq = 0
        self._unsent: list[dict[str, Any]] = []
        self._flushing = asyncio.Lock()

    async def load_plan(self) -> Plan:
        """The run's plan: the one place a workflow reads it, by reference from the control worker's store
        (plan_ref.load: in parts, verified here against the reference)."""
        assert self.start is not None
        return await plan_ref.load(self.start.plan, self.start.artifacts)

    # ------------------------------------------------------------ signals and queries
    @workflow.signal
    def decide(self, data: dict[str, Any]) -> None:
        """`upgrader promote` / `upgrader abort`: a gates.Decision as its dict."""
        found = Decision.from_dict(data)
        if found is None:
            return
        if found.kind is DecisionKind.ABORT:
            if self.asked_abort is None:
                self.asked_abort = found
            self.forward(found)
        elif found.gate is not None and (found.ahead or found.gate == self.waiting):
            # As the local engine (gates.counts_at): a promote counts at the gate the run waits at, or ahead.
            self.promotes.setdefault(found.gate, found)

    def forward(self, abort: Decision) -> None:
        """An abort came: the run's workflow passes it on to the child that runs hosts now."""

    @workflow.query
    def progress(self, since: int = 0) -> dict[str, Any]:
        """The run's live state: the hosts changed and the events made after the cursor ``since`` (0: all),
        at most limits.PROGRESS_HOSTS hosts an answer (``more``: ask again from ``cursor``), so an answer
        stays under limits.QUERY_BUDGET at any fleet size."""
        abort = self.policy.abort if self.policy and self.policy.abort else self.asked_abort
        changed = sorted((c, h) for h, c in self.changed.items() if c > since)
        more = len(changed) > limits.PROGRESS_HOSTS
        changed = changed[: limits.PROGRESS_HOSTS]
        upto = changed[-1][0] if more else self.cursor
        return {
            "run": self.start.run_id if self.start else "",
            "waiting": self.waiting,
            "outcome": self.outcome,
            "cursor": upto,
            "more": more,
            "hosts": {
                h: [self.hosts[h].state, self.hosts[h].detail, self.hosts[h].plan.datacenter] for _, h in changed
            },
            "events": [e[1:] for e in self.events if since < e[0] <= upto],
            "abort": abort.to_dict() if abort else None,
            "tree": self.tree(),
        }

    def tree(self) -> dict[str, Any]:
        """The run's workflows so far (the run's workflow says: its children, their continues-as-new)."""
        return {}

    # ------------------------------------------------------------ the interpreter
    async def drive(self, program: Program[T]) -> T:
        """Run one of the policy's programs to its end, carrying out each action it yields."""
        answer: m.Answer | None = None
        while True:
            action, result = step(program, answer)
            self.moves += 1
            if action is None:
                return result  # type: ignore[return-value]
            answer = await self.carry_out(action)

    async def window(self, programs: Iterable[Program[None]], width: int) -> None:
        """Run ``programs`` side by side, at most ``width`` started and not ended (a sliding window: Temporal's
        ``batch_sliding_window``), so the pending activities stay under limits.PENDING_BUDGET."""
        running: set[asyncio.Future[None]] = set()
        for program in programs:
            await workflow.wait_condition(lambda: len(running) < width)
            task = asyncio.ensure_future(self.drive(program))
            running.add(task)
            task.add_done_callback(running.discard)
        while running:
            await asyncio.gather(*running)

    def now(self) -> float:
        return workflow.now().timestamp()

    def stopping(self) -> bool:
        """Should a wait end: the policy says so, or an abort came that it has not heard yet."""
        assert self.policy is not None
        return self.policy.stopping() or (self.asked_abort is not None and self.policy.abort is None)

    def unheard_abort(self) -> Decision | None:
        assert self.policy is not None
        return self.asked_abort if self.policy.abort is None else None

    async def carry_out(self, action: m.Action) -> m.Answer:
        """What the policy asked, done with activities, timers and signals; the event that answers it."""
        assert self.policy is not None
        if isinstance(action, m.Record):
            await self.record(action.event, **action.fields)
        elif isinstance(action, m.Notify):
            await self.notify(action.event, **action.fields)
        elif isinstance(action, m.Say):
            self.event(action.what, action.text, action.host or "")
        elif isinstance(action, m.SetState):
            self._set(action.host, action.state, action.detail)
        elif isinstance(action, m.Fail):
            self.hosts[action.host].failure = action.detail
            self._set(action.host, action.state, action.detail)
            self.event("failure", action.detail, action.host)
        elif isinstance(action, m.RunHosts):
            await self.window((self.policy.host_program(h) for h in action.hosts), limits.WINDOW)
        elif isinstance(action, m.RollBack):  # in a child: a host program's own (a lost host put back)
            await self.window((self.policy.rollback_program(h) for h in action.hosts), limits.WINDOW)
        elif isinstance(action, m.RunHost):
            return await self.upgrade(action)
        elif isinstance(action, m.CheckRound):
            # The round's call has SAFETY_MARGIN over its budget (host_actions.Timeouts); the activity, which first
            # opens the host's session, has ACTIVITY_MARGIN: the call inside times out first.
            seconds = action.seconds - defaults.SAFETY_MARGIN + defaults.ACTIVITY_MARGIN
            done = await self.host_call("check", action.host, seconds, lock_check=action.lock)
            await self.record_all(done.records)
            return m.Checked(action.host, checked_problem(done), done.ops, self.now())
        elif isinstance(action, m.Testinfra):
            done = await self.host_call("testinfra", action.host, defaults.ACTIVITY_SLACK, when=action.when)
            self.merge(done)
            return m.Tested(action.host, done.ok, self.now())
        elif isinstance(action, m.RollBackHost):
            return await self.roll_back(action)
        elif isinstance(action, m.WaitUntil):
            seconds = action.at - self.now()
            fired = False
            if seconds > 0 and not self.stopping():
                fired = await self.timer(self.stopping, seconds)
            return m.Woke(self.since(action.at, fired), self.stopping(), self.unheard_abort())
        elif isinstance(action, m.AwaitChange):
            seen = self.moves
            await workflow.wait_condition(lambda: self.moves != seen)
        elif isinstance(action, m.AskAbort):
            return m.AbortAsked(self.unheard_abort(), self.now())
        elif isinstance(action, m.OpenGate):
            self.waiting = action.gate
        elif isinstance(action, m.AwaitDecision):
            return await self.await_decision(action)
        elif isinstance(action, m.Admit):
            return m.Admitted(await self.admit(action.estimate), self.now())
        return m.Done(self.now())

    async def await_decision(self, action: m.AwaitDecision) -> m.GateDecided:
        """A promote or abort signal for the gate, a stop, or ``until``: whichever comes first."""
        assert self.policy is not None
        policy = self.policy

        def decided() -> bool:
            return self.asked_abort is not None or action.gate in self.promotes or policy.halted is not None

        seconds = action.until - self.now()
        fired = False
        if seconds > 0 and not decided():
            fired = await self.timer(decided, seconds)
        decision = self.asked_abort or self.promotes.get(action.gate)
        now = self.since(action.until, fired)
        return m.GateDecided(decision, now, stopped=decision is None and policy.halted is not None)

    @staticmethod
    async def timer(until: Callable[[], bool], seconds: float) -> bool:
        """Wait for ``until`` or ``seconds``; True if the timer fired."""
        try:
            await workflow.wait_condition(until, timeout=seconds)
        except TimeoutError:
            return True
        return False

    def since(self, at: float, fired: bool) -> float:
        """The time to tell the policy after a wait: at least ``at`` once its timer fired.  The task that
        resumes a run on a control worker that has just replayed its history (a worker replaced mid-run) was
        measured to carry the previous task's time: the policy then saw the timer end early, asked for another
        one, and that history no longer replayed (tests/unit/test_temporal_rolling.py).  A fired timer means
        durable time reached ``at``; in a run that never changed workers ``now`` is already past it."""
        return max(self.now(), at) if fired else self.now()

    async def upgrade(self, action: m.RunHost) -> m.HostFinished:
        """The host's program (the plan's own steps), once; a worker lost mid-program is the policy's to
        judge (HostFinished.lost), never retried here."""
        host = action.host
        hp = self.hosts[host].plan
        await self.record(Event.HOST_BEGIN, host=host, steps=program_steps(hp), path=hp.path)
        self._set(host, HostState.UPGRADING, " → ".join([hp.from_version, *hp.path]))
        try:
            done = await self.host_call("upgrade", host, action.seconds + defaults.ACTIVITY_SLACK, retry=ONCE)
        except ActivityError as exc:
            return m.HostFinished(host, None, self.now(), lost=f"worker lost mid-program ({cause(exc)})")
        self.merge(done)
        return m.HostFinished(host, Ran(done.ran), self.now())

    async def roll_back(self, action: m.RollBackHost) -> m.RolledBack:
        host = action.host
        self._set(host, HostState.ROLLING_BACK, f"→ {self.hosts[host].plan.from_version}")
        try:
            seconds = max(defaults.ROLLBACK_SECONDS, action.seconds + defaults.ACTIVITY_SLACK)
            done = await self.host_call("rollback", host, seconds)
        except ActivityError as exc:  # every attempt failed: a human must look
            self._set(host, HostState.ROLLBACK_FAILED, f"rollback not confirmed: {cause(exc)}")
            await self.record(Event.ROLLBACK_END, host=host, ok=False, error=cause(exc))
            return m.RolledBack(host, Back.FAILED, raised=True, now=self.now())
        self.merge(done)
        return m.RolledBack(host, Back(done.ran), now=self.now())

    async def admit(self, estimate: float) -> str | None:
        """The window guard at workflow time, on the control worker (it has the calendars and overrides)."""
        assert self.start is not None
        now = workflow.now() + timedelta(seconds=self.start.now_offset)
        reason: str | None = await workflow.execute_activity(
            "admit",
            Admission(self.start.run_id, now.isoformat(), estimate, self.start.overrides),
            task_queue=CONTROL_QUEUE,
            start_to_close_timeout=timedelta(seconds=defaults.ADMISSION_SECONDS),
            retry_policy=REPEATABLE,
        )
        return reason

    # ------------------------------------------------------------ records and live view
    async def record(self, event: Event, stored_plan: PlanRef | None = None, **data: Any) -> None:
        """Append a journal record (in order, each once) through the control worker; returns once written.
        ``stored_plan``: the control worker copies the run's plan from its store into the run's directory."""
        self.queue(event, **data)
        await self.flush(stored_plan)

    async def record_all(self, entries: list[dict[str, Any]]) -> None:
        """An activity's records, written in one batch."""
        for entry in entries:
            self.queue(**entry)
        await self.flush()

    def queue(self, event: Event, **data: Any) -> None:
        self._seq += 1
        at = data.pop("at", None) or workflow.now().isoformat(timespec="milliseconds")
        self._unsent.append({"seq": self._seq, "at": at, "event": event, **data})
        self.follow(event, data)

    def follow(self, event: Event, data: dict[str, Any]) -> None:
        """Each record as it is made (the run's workflow keeps its search attributes by them)."""

    async def flush(self, stored_plan: PlanRef | None = None) -> None:
        """Every queued record written, by one activity for all queued so far (the ones queued while a batch
        is on its way go out together in the next), or several in seq order when they are more than
        limits.RECORD_BATCH_BYTES (``batches``): the control worker appends only past its last seq, so each
        is written once, in order, whichever activity is retried."""
        async with self._flushing:
            if not self._unsent and stored_plan is None:
                return  # another coroutine's flush wrote these too
            queued, self._unsent = self._unsent, []
            assert self.start is not None
            for batch in batches(
                queued,
                limits.RECORD_BATCH_BYTES
                - json_size(Records(self.start.run_id, [], stored_plan, self.start.artifacts)),
            ):
                await workflow.execute_activity(
                    "record",
                    Records(self.start.run_id, batch, stored_plan, self.start.artifacts),
                    task_queue=CONTROL_QUEUE,
                    start_to_close_timeout=timedelta(seconds=defaults.RECORD_SECONDS),
                    retry_policy=RECORDING,
                )
                stored_plan = None  # copied with the first batch

    def merge(self, done: Done) -> None:
        """An activity's hosts' new states and its journal records (the failures are the policy's to count).

        The records are queued, not written yet: what happened is already in the workflow's history, and
        they go out with the next batch: the next record the policy yields, the next host's host-begin (both
        before anything else changes on a host), or the flush at a child's end.  One batch for many hosts'
        records is what keeps a host's history at ~10 events."""
        for host, fields in unpack_hosts(done.states):
            self.hosts[host].load(fields)
            self.touch(host)
            if self.hosts[host].failure and self.hosts[host].state in (HostState.FAILED, HostState.UNREACHABLE):
                self.event("failure", self.hosts[host].failure, host)
        for entry in done.records:
            if entry["event"] not in SKIPPED_EVENTS:
                self.queue(**entry)

    async def notify(self, kind: str, **details: Any) -> None:
        """The inventory's webhooks, told by the control worker (a notice lost is never a run's failure)."""
        assert self.plan is not None and self.start is not None
        notice = Notice(kind, self.plan.component, self.plan.target_version, self.start.run_id, details)
        with contextlib.suppress(ActivityError):
            await workflow.execute_activity(
                "notify",
                notice,
                task_queue=CONTROL_QUEUE,
                start_to_close_timeout=timedelta(seconds=defaults.NOTIFY_SECONDS),
                retry_policy=RetryPolicy(maximum_attempts=defaults.NOTIFY_ATTEMPTS),
            )

    def event(self, kind: str, text: str, host: str = "", source: str = "", at: int = 0) -> None:
        """An event for `watch` (``source``: the child workflow that made it, when the parent takes it over;
        ``at``: its cursor there, so a watcher that followed the child shows only what it had not seen)."""
        self.cursor += 1
        self.events.append([self.cursor, kind, text, host, source, at])
        if len(self.events) > limits.WATCH_EVENTS:
            del self.events[: -limits.WATCH_EVENTS]

    def touch(self, host: str) -> None:
        self.cursor += 1
        self.changed[host] = self.cursor

    def _set(self, host: str, state: HostState, detail: str = "") -> None:
        self.hosts[host].state, self.hosts[host].detail = HostState(state), detail
        self.touch(host)

    # ------------------------------------------------------------ activities
    def work(self, dc: str, hosts: list[str], **extra: Any) -> Work:
        assert self.start is not None and self.plan is not None
        return Work(
            self.start.run_id,
            self.plan.content_hash,
            dc,
            hosts,
            self.start.operator,
            self.start.artifacts,
            self.start.python,
            self.start.break_lock,
            pack_hosts((h, self.hosts[h].fields()) for h in hosts),
            plan=self.start.plan,
            signature=self.start.signature,
            **extra,
        )

    async def call(self, name: str, work: Work, seconds: float, retry: RetryPolicy = REPEATABLE) -> Done:
        done: Done = await workflow.execute_activity(
            name,
            work,
            result_type=Done,
            task_queue=queue(work.datacenter),
            start_to_close_timeout=timedelta(seconds=seconds),
            heartbeat_timeout=HEARTBEAT,
            retry_policy=retry,
        )
        return done

    async def host_call(
        self, name: str, host: str, seconds: float, retry: RetryPolicy = REPEATABLE, **extra: Any
    ) -> Done:
        return await self.call(name, self.work(self.hosts[host].plan.datacenter, [host], **extra), seconds, retry)


def json_size(value: Any) -> int:
    """Bytes of ``value`` as JSON, as Temporal's default converter writes it (compact separators)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return len(json.dumps(value, separators=(",", ":"), sort_keys=True, default=str).encode())


def batches(entries: list[dict[str, Any]], budget: int) -> list[list[dict[str, Any]]]:
    """``entries`` in order, cut into consecutive batches of at most ``budget`` bytes of JSON each (a record
    larger than that alone in its batch); one batch, perhaps empty, when they all fit."""
    out: list[list[dict[str, Any]]] = [[]]
    used = 0
    for entry in entries:
        size = json_size(entry) + 1  # and its comma
        if out[-1] and used + size > budget:
            out.append([])
            used = 0
        out[-1].append(entry)
        used += size
    return out


def checked_problem(done: Done) -> str | None:
    """A check activity's problem as the policy reads it: a HandedOver when the activity's field says so (the
    str subclass itself does not survive the activity's payload)."""
    return HandedOver(done.problem) if done.handed_over and done.problem is not None else done.problem


def cause(exc: ActivityError) -> str:
    found = exc.cause
    if isinstance(found, TemporalTimeout) and found.type is TimeoutType.HEARTBEAT:
        return f"no heartbeat for {HEARTBEAT.total_seconds():g}s"
    return str(found or exc)
