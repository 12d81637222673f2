"""The upgrade as a Temporal workflow: an interpreter of the run policy (engine/policy.py), with durable time.

As Temporal's ``dsl`` sample interprets a program of activities, this workflow steps the policy's
programs and carries out each action they yield: a host's program, a round of checks, a rollback
are activities on the host's datacenter queue (activities.py, which runs the engine's HostActions
there); waits are workflow timers; promotes and aborts are signals; window admission and the
journal are activities on the control worker.  It decides nothing: every choice (what runs next,
who is rolled back, how the run ends) is the policy's, the same as a local run's (engine/apply.py).

Deterministic by construction: no clock but workflow.now(), no I/O, upgrader modules passed through.
Changing it under runs in flight: a change to the commands a run has already recorded goes under
``workflow.patched(...)`` (the rule: worker.WORKFLOWS; README: Engines, upgrading the workers), and
tests/unit/test_temporal_replay.py replays the saved histories (tests/histories/) against it in CI.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
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
    from upgrader.engine.policy_state import Program, step
    from upgrader.errors import ExitCode
    from upgrader.models.plan import Plan
    from upgrader.temporal import search
    from upgrader.temporal.messages import Admission, Done, Notice, Records, Start, Work
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
# A datacenter worker's refusal of the plan itself (activities.HostWork.plan): the run is refused.
PLAN_REFUSALS = ("PlanNotSigned", "InventoryDiffers")
SKIPPED_EVENTS = {Event.HOST_BEGIN}  # the workflow records it itself, before the activity runs
T = TypeVar("T")


@workflow.defn(name="upgrade")
class UpgradeWorkflow:
    def __init__(self) -> None:
        self.start: Start | None = None
        self.plan: Plan | None = None
        self.hosts: dict[str, HostRun] = {}
        self.policy: RunPolicy | None = None
        self.asked_abort: Decision | None = None  # an abort signal the policy has not heard yet
        self.promotes: dict[str, Decision] = {}
        self.waiting: str | None = None
        self.locked: dict[str, list[str]] = {}
        self.facts: dict[str, dict[str, Any]] = {}
        self.events: list[list[str]] = []  # [kind, text, host] for `watch`
        self.outcome: dict[str, Any] | None = None
        self.moves = 0  # steps of the policy's programs: a program waiting for a slot waits for one
        self._seq = 0
        self._unsent: list[dict[str, Any]] = []
        self._flushing = asyncio.Lock()

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
        elif found.gate is not None and (found.ahead or found.gate == self.waiting):
            # As the local engine (gates.counts_at): a promote counts at the gate the run waits at, or ahead.
            self.promotes.setdefault(found.gate, found)

    @workflow.query
    def plan_json(self) -> str:
        return self.start.plan if self.start else ""

    @workflow.query
    def plan_signature(self) -> str:
        """The controller's signature of the plan and run (messages.Start.signature): the workers check it."""
        return self.start.signature if self.start else ""

    @workflow.query
    def progress(self) -> dict[str, Any]:
        abort = self.policy.abort if self.policy and self.policy.abort else self.asked_abort
        return {
            "run": self.start.run_id if self.start else "",
            "waiting": self.waiting,
            "outcome": self.outcome,
            "hosts": {h: [r.state, r.detail, r.plan.datacenter] for h, r in self.hosts.items()},
            "events": self.events,
            "abort": abort.to_dict() if abort else None,
        }

    # ------------------------------------------------------------ the run
    @workflow.run
    async def run(self, start: Start) -> dict[str, Any]:
        self.start = start
        self.plan = plan = Plan.from_json(start.plan)
        self.hosts = {h.host: HostRun(h) for h in plan.hosts}
        self.policy = policy = RunPolicy(plan, self.hosts, run_id=start.run_id, host_seconds=start.host_seconds)
        # The execution's own id: `status`/`show`/`watch` ask this execution, not a later run of the same id.
        await self.record(files={"plan.json": start.plan}, **start.run_start, execution=workflow.info().run_id)
        for h in plan.hosts:
            self._set(h.host, HostState.PENDING, " → ".join([h.from_version, *h.path]))
        self.event("run", f"run {start.run_id}: {plan.component} → {plan.target_version} by {start.operator}")
        refused = await self.lock_hosts()
        if refused is not None:
            return await self.refused(refused)
        policy.locked = {h for hosts in self.locked.values() for h in hosts}
        try:
            outcome = await self.drive(policy.run_program())
        finally:
            stuck = await self.release_locks()
        outcome, last = policy.closing(outcome, stuck)
        for action in last:
            if isinstance(action, m.Record) and action.event == Event.RUN_END:
                action = m.Record(action.event, {**action.fields, "handshake_retries": 0, "engine": "temporal"})
            await self.carry_out(action)
        rows = [[h.name, h.plan.datacenter, h.state, h.detail] for h in self.hosts.values()]
        self.outcome = {
            "exit_code": int(outcome.exit_code),
            "status": outcome.status,
            "message": outcome.message,
            "rows": rows,
        }
        return self.outcome

    async def refused(self, why: str) -> dict[str, Any]:
        """Locks or the plan refused: nothing was changed anywhere (the run never started)."""
        code, status = int(ExitCode.REFUSED), "refused"
        hosts = {h.name: {"state": h.state, "detail": h.detail, "version": h.version()} for h in self.hosts.values()}
        await self.record(
            Event.RUN_END,
            status=status,
            exit_code=code,
            message=why,
            handshake_retries=0,
            engine="temporal",
            hosts=hosts,
        )
        rows = [[h.name, h.plan.datacenter, h.state, h.detail] for h in self.hosts.values()]
        self.outcome = {"exit_code": code, "status": status, "message": why, "rows": rows}
        return self.outcome

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
        policy = self.policy
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
        elif isinstance(action, m.Stage):
            return m.Staged(await self.stage(action.hosts), self.now())
        elif isinstance(action, m.Unstage):
            await self.unstage(action.hosts, action.failed)
        elif isinstance(action, m.RunHosts):
            await asyncio.gather(*(self.drive(policy.host_program(h)) for h in action.hosts))
        elif isinstance(action, m.RunHost):
            return await self.upgrade(action)
        elif isinstance(action, m.CheckRound):
            # The round's call has SAFETY_MARGIN over its budget (host_actions.Timeouts); the activity, which first
            # opens the host's session, has ACTIVITY_MARGIN: the call inside times out first.
            seconds = action.seconds - defaults.SAFETY_MARGIN + defaults.ACTIVITY_MARGIN
            done = await self.host_call("check", action.host, seconds, lock_check=action.lock)
            for entry in done.records:
                await self.record(**entry)
            return m.Checked(action.host, checked_problem(done), done.ops, self.now())
        elif isinstance(action, m.Testinfra):
            done = await self.host_call("testinfra", action.host, defaults.ACTIVITY_SLACK, when=action.when)
            await self.merge(done)
            return m.Tested(action.host, done.ok, self.now())
        elif isinstance(action, m.RollBack):
            await asyncio.gather(*(self.drive(policy.rollback_program(h)) for h in action.hosts))
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
        elif isinstance(action, m.Clock):
            pass
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
            return m.HostFinished(host, None, self.now(), lost=f"worker lost mid-program ({_cause(exc)})")
        await self.merge(done)
        return m.HostFinished(host, Ran(done.ran), self.now())

    async def roll_back(self, action: m.RollBackHost) -> m.RolledBack:
        host = action.host
        self._set(host, HostState.ROLLING_BACK, f"→ {self.hosts[host].plan.from_version}")
        try:
            seconds = max(defaults.ROLLBACK_SECONDS, action.seconds + defaults.ACTIVITY_SLACK)
            done = await self.host_call("rollback", host, seconds)
        except ActivityError as exc:  # every attempt failed: a human must look
            self._set(host, HostState.ROLLBACK_FAILED, f"rollback not confirmed: {_cause(exc)}")
            await self.record(Event.ROLLBACK_END, host=host, ok=False, error=_cause(exc))
            return m.RolledBack(host, Back.FAILED, raised=True, now=self.now())
        await self.merge(done)
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
    async def record(self, event: Event, files: dict[str, str] | None = None, **data: Any) -> None:
        """Append a journal record (in order, each once) through the control worker; returns once written."""
        self._seq += 1
        at = data.pop("at", None) or workflow.now().isoformat(timespec="milliseconds")
        self._unsent.append({"seq": self._seq, "at": at, "event": event, **data})
        search.follow(event, data)  # the run's phase and status, for `runs --engine temporal`
        async with self._flushing:
            if not self._unsent and not files:
                return  # another coroutine's flush wrote this one too
            batch, self._unsent = self._unsent, []
            assert self.start is not None
            await workflow.execute_activity(
                "record",
                Records(self.start.run_id, batch, files or {}),
                task_queue=CONTROL_QUEUE,
                start_to_close_timeout=timedelta(seconds=defaults.RECORD_SECONDS),
                retry_policy=REPEATABLE,
            )

    async def merge(self, done: Done) -> None:
        """An activity's hosts' new states and its journal records (the failures are the policy's to count)."""
        for host, fields in done.states.items():
            self.hosts[host].load(fields)
            if self.hosts[host].failure and self.hosts[host].state in (HostState.FAILED, HostState.UNREACHABLE):
                self.event("failure", self.hosts[host].failure, host)
        for entry in done.records:
            if entry["event"] not in SKIPPED_EVENTS:
                await self.record(**entry)

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

    def event(self, kind: str, text: str, host: str = "") -> None:
        self.events.append([kind, text, host])

    def _set(self, host: str, state: HostState, detail: str = "") -> None:
        self.hosts[host].state, self.hosts[host].detail = HostState(state), detail

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
            {h: self.hosts[h].fields() for h in hosts},
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

    def by_dc(self, hosts: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for h in hosts:
            out.setdefault(self.hosts[h].plan.datacenter, []).append(h)
        return out

    async def each_dc(self, name: str, hosts: list[str], seconds: float, **extra: Any) -> dict[str, Done]:
        groups = self.by_dc(hosts)
        results = await asyncio.gather(
            *(self.call(name, self.work(dc, hs, **extra), seconds) for dc, hs in groups.items())
        )
        return dict(zip(groups, results, strict=True))

    # ------------------------------------------------------------ locks and staging
    async def lock_hosts(self) -> str | None:
        """Every datacenter's hosts locked and their facts as planned (None), or nothing changed anywhere
        and the refusals.

        A datacenter worker that refuses the plan itself (not signed with its key, or made from another
        inventory: activities.HostWork.plan) refuses the run, as a lock refused would."""
        groups = self.by_dc(list(self.hosts))
        got = await asyncio.gather(
            *(self.call("lock", self.work(dc, hs), defaults.LOCK_SECONDS) for dc, hs in groups.items()),
            return_exceptions=True,
        )
        results: dict[str, Done] = {}
        refusals: list[str] = []
        for dc, done in zip(groups, got, strict=True):
            if isinstance(done, ActivityError) and getattr(done.cause, "type", None) in PLAN_REFUSALS:
                refusals.append(f"{dc}: {getattr(done.cause, 'message', None) or _cause(done)}")
            elif isinstance(done, BaseException):
                raise done
            else:
                results[dc] = done
        refusals += [str(d.refused) for d in results.values() if d.refused]
        for dc, done in results.items():
            await self.merge(done)
            self.locked[dc] = done.locked
            self.facts.update(done.facts)
        if refusals:
            await self.release_locks()
            return "; ".join(str(r) for r in refusals)
        return None

    async def release_locks(self) -> list[str]:
        """Release the locks this run holds; the hosts that kept theirs (no answer: exit 4)."""
        locked = [h for hosts in self.locked.values() for h in hosts]
        self.locked = {}
        stuck: list[str] = []
        if locked:
            for done in (await self.each_dc("release", locked, 300)).values():
                await self.merge(done)
                stuck += done.stuck
        return sorted(stuck)

    async def stage(self, hosts: list[str]) -> dict[str, str]:
        """Each datacenter stages its hosts (and takes away what it staged if one of them failed)."""
        results = await self.each_dc("stage", hosts, 1800, facts=self.facts)
        for done in results.values():
            await self.merge(done)
        failed = {h: self.hosts[h].detail for h in hosts if self.hosts[h].state == HostState.FAILED}
        if failed:
            self.event("stage-failed", "staging failed; removing what this run staged — no live change was made")
        return failed

    async def unstage(self, hosts: list[str], failed: dict[str, str]) -> None:
        """The datacenters that staged fine take their releases away again too."""
        bad = {self.hosts[h].plan.datacenter for h in failed}
        clean = [h for h in hosts if self.hosts[h].plan.datacenter not in bad]
        if clean:
            for done in (await self.each_dc("unstage", clean, 300)).values():
                await self.merge(done)


def checked_problem(done: Done) -> str | None:
    """A check activity's problem as the policy reads it: a HandedOver when the activity's field says so (the
    str subclass itself does not survive the activity's payload)."""
    return HandedOver(done.problem) if done.handed_over and done.problem is not None else done.problem


def _cause(exc: ActivityError) -> str:
    cause = exc.cause
    if isinstance(cause, TemporalTimeout) and cause.type is TimeoutType.HEARTBEAT:
        return f"no heartbeat for {HEARTBEAT.total_seconds():g}s"
    return str(cause or exc)
