"""The upgrade as a Temporal workflow: the local engine's run (engine/apply.py), with durable time.

It walks the verified plan's phases and hosts; every host program is an activity on the host's
datacenter queue (activities.py), which sends the plan's own steps through the same seam and the
same engine code as a local run.  What the local engine does with threads and sleeps is done here
with workflow timers: bakes (a round of the canary's checks every bake_interval), pauses between
datacenters, manual gates (signals, with a timeout) and window admission (the guard, at workflow
time).  The workflow writes the run's journal through the control worker's ``record`` activity,
so `show`, `report` and `runs` read a Temporal run like any other.

Deterministic by construction: no clock but workflow.now(), no I/O, upgrader modules passed through.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, TimeoutType
from temporalio.exceptions import TimeoutError as TemporalTimeout

with workflow.unsafe.imports_passed_through():
    from upgrader.engine.apply import _by_turns, rollback_targets, verdict
    from upgrader.engine.host_actions import HostRun
    from upgrader.engine.gates import Decision, DecisionKind, GateOutcome
    from upgrader.engine.programs import checks_budget, hop_timeout
    from upgrader.engine.vocabulary import FAILED, ON_TARGET, UPGRADED, Event, HostState, RunStatus
    from upgrader.errors import ExitCode
    from upgrader.models.plan import Phase, Plan
    from upgrader.planning import budgets
    from upgrader.temporal.messages import Admission, Done, Notice, Records, Start, Work
    from upgrader.temporal.settings import CONTROL_QUEUE, queue

HEARTBEAT = timedelta(seconds=5)  # a SIGKILLed worker is noticed within this
ONCE = RetryPolicy(maximum_attempts=1)  # a host program: never run twice (see _lost)
REPEATABLE = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=1.5,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=20,
)
# A datacenter worker's refusal of the plan itself (activities.HostWork.plan): the run is refused.
PLAN_REFUSALS = ("PlanNotSigned", "InventoryDiffers")
SKIPPED_EVENTS = {Event.HOST_BEGIN, Event.ROLLBACK_BEGIN}  # the workflow records these itself, before the activity runs


@workflow.defn(name="upgrade")
class UpgradeWorkflow:
    def __init__(self) -> None:
        self.start: Start | None = None
        self.plan: Plan | None = None
        self.hosts: dict[str, HostRun] = {}
        self.failures = 0
        self.failures_in: dict[str, int] = {}  # per datacenter, for the failure budgets (planning/budgets.py)
        self.halted: str | None = None
        self.held = False
        self.abort: Decision | None = None
        self._abort_handled = False
        self.promotes: dict[str, Decision] = {}
        self.waiting: str | None = None
        self.locked: dict[str, list[str]] = {}
        self.facts: dict[str, dict[str, Any]] = {}
        self.events: list[list[str]] = []  # [kind, text, host] for `watch`
        self.outcome: dict[str, Any] | None = None
        self._seq = 0
        self._recovered: set[str] = set()  # hosts put back after a lost worker: their program ran again once
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
            if self.abort is None:
                self.abort = found
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
        return {
            "run": self.start.run_id if self.start else "",
            "waiting": self.waiting,
            "outcome": self.outcome,
            "hosts": {h: [r.state, r.detail, r.plan.datacenter] for h, r in self.hosts.items()},
            "events": self.events,
            "abort": self.abort.to_dict() if self.abort else None,
        }

    # ------------------------------------------------------------ the run
    @workflow.run
    async def run(self, start: Start) -> dict[str, Any]:
        self.start = start
        self.plan = plan = Plan.model_validate_json(start.plan)
        self.hosts = {h.host: HostRun(h) for h in plan.hosts}
        self.budgets = budgets.of_plan(plan)
        # The execution's own id: `status`/`show`/`watch` ask this execution, not a later run of the same id.
        await self.record(files={"plan.json": start.plan}, **start.run_start, execution=workflow.info().run_id)
        for h in plan.hosts:
            self._set(h.host, "pending", " → ".join([h.from_version, *h.path]))
        self.event("run", f"run {start.run_id}: {plan.component} → {plan.target_version} by {start.operator}")
        if not await self.lock_hosts():
            return await self.end(int(ExitCode.REFUSED), "refused", self.halted or "refused")
        await self.notify("run-started", hosts=len(plan.hosts))
        try:
            code, status, message = await self.execute()
        finally:
            await self.release_locks()
        return await self.end(code, status, message)

    async def execute(self) -> tuple[int, str, str]:
        assert self.plan is not None
        if not await self.stage():
            return int(ExitCode.FAILED_ROLLED_BACK), RunStatus.STAGE_FAILED, "staging failed; no live change was made"
        for phase in self.plan.phases:
            if self.halted:
                break
            await self.run_phase(phase)
        return self.conclude()

    async def end(self, code: int, status: str, message: str) -> dict[str, Any]:
        await self.record(
            Event.RUN_END,
            status=status,
            exit_code=code,
            message=message,
            handshake_retries=0,
            engine="temporal",
            hosts={
                h.name: {"state": h.state, "detail": h.detail, "version": h.version()}
                for h in self.hosts.values()
            },
        )
        if status != "refused":
            kind = {
                int(ExitCode.OK): "finished",
                int(ExitCode.FAILED_ROLLED_BACK): "rolled-back",
                int(ExitCode.HALTED): "aborted" if status == RunStatus.ABORTED else "halted",
            }.get(code, "failed")
            await self.notify(kind, status=status, message=message)
        rows = [[h.name, h.plan.datacenter, h.state, h.detail] for h in self.hosts.values()]
        self.outcome = {"exit_code": code, "status": status, "message": message, "rows": rows}
        return self.outcome

    def conclude(self) -> tuple[int, str, str]:
        """The run's verdict, by the local engine's rules (apply.verdict)."""
        assert self.plan is not None
        code, status, message = verdict(
            self.hosts,
            held=self.held,
            failures=self.failures,
            aborted=self.abort is not None,
            halted=self.halted,
            target=self.plan.target_version,
        )
        return int(code), status, message

    # ------------------------------------------------------------ records and live view
    async def record(self, event: Event, files: dict[str, str] | None = None, **data: Any) -> None:
        """Append a journal record (in order, each once) through the control worker; returns once written."""
        self._seq += 1
        at = data.pop("at", None) or workflow.now().isoformat(timespec="milliseconds")
        self._unsent.append({"seq": self._seq, "at": at, "event": event, **data})
        async with self._flushing:
            if not self._unsent and not files:
                return  # another coroutine's flush wrote this one too
            batch, self._unsent = self._unsent, []
            assert self.start is not None
            await workflow.execute_activity(
                "record",
                Records(self.start.run_id, batch, files or {}),
                task_queue=CONTROL_QUEUE,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=REPEATABLE,
            )

    async def merge(self, done: Done) -> None:
        for host, fields in done.states.items():
            run = self.hosts[host]
            run.state, run.detail = fields["state"], fields["detail"]
            run.touched, run.failure = fields["touched"], fields["failure"]
            if run.failure and fields["state"] in FAILED:
                self.event("failure", run.failure, host)
        if done.failures and done.states:
            self.count(self.hosts[next(iter(done.states))].plan.datacenter, done.failures)
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
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )

    def count(self, dc: str, failures: int = 1) -> None:
        self.failures += failures
        self.failures_in[dc] = self.failures_in.get(dc, 0) + failures

    def spent(self) -> str | None:
        """Why no new host may start: the run's or a datacenter's failure budget is spent."""
        return self.budgets.spent(self.failures, self.failures_in)

    def event(self, kind: str, text: str, host: str = "") -> None:
        self.events.append([kind, text, host])

    def _set(self, host: str, state: str, detail: str = "") -> None:
        self.hosts[host].state, self.hosts[host].detail = HostState(state), detail

    # ------------------------------------------------------------ activities
    def work(self, dc: str, hosts: list[str], **extra: Any) -> Work:
        assert self.start is not None and self.plan is not None
        states = {
            h: {
                "state": self.hosts[h].state,
                "detail": self.hosts[h].detail,
                "touched": self.hosts[h].touched,
                "failure": self.hosts[h].failure,
            }
            for h in hosts
        }
        return Work(
            self.start.run_id,
            self.plan.content_hash,
            dc,
            hosts,
            self.start.operator,
            self.start.artifacts,
            self.start.python,
            self.start.break_lock,
            states,
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
    async def lock_hosts(self) -> bool:
        """Every datacenter's hosts locked and their facts as planned, or nothing changed anywhere.

        A datacenter worker that refuses the plan itself (not signed with its key, or made from another
        inventory: activities.HostWork.plan) refuses the run, as a lock refused would."""
        groups = self.by_dc(list(self.hosts))
        got = await asyncio.gather(
            *(self.call("lock", self.work(dc, hs), 300) for dc, hs in groups.items()), return_exceptions=True
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
            self.halted = "; ".join(str(r) for r in refusals)
            await self.release_locks()
            return False
        return True

    async def release_locks(self) -> None:
        locked = [h for hosts in self.locked.values() for h in hosts]
        self.locked = {}
        if locked:
            for done in (await self.each_dc("release", locked, 300)).values():
                await self.merge(done)

    async def stage(self) -> bool:
        results = await self.each_dc("stage", list(self.hosts), 1800, facts=self.facts)
        for done in results.values():
            await self.merge(done)
        if all(d.ok for d in results.values()):
            return True
        self.event("stage-failed", "staging failed; removing what this run staged — no live change was made")
        clean = [h for dc, d in results.items() if d.ok for h in self.by_dc(list(self.hosts))[dc]]
        if clean:  # the other datacenters staged fine: take their releases away again too
            for done in (await self.each_dc("unstage", clean, 300)).values():
                await self.merge(done)
        return False

    # ------------------------------------------------------------ phases
    async def run_phase(self, phase: Phase) -> None:
        assert self.plan is not None and self.start is not None
        if phase.gate is not None and not await self.pass_gate(phase):
            return
        if self.abort is not None:  # between phases: nothing of this one started
            await self.aborted([])
            return
        if phase.pause_before:
            self.event("pause", f"pausing {phase.pause_before:g}s before {phase.datacenter}")
            await workflow.sleep(phase.pause_before)
        reason = await self.admit(phase)
        if reason:
            self.halted = f"stopped before phase {phase.index + 1}: {reason}"
            await self.record(Event.HALT, reason=self.halted)
            self.event("halt", self.halted)
            return
        await self.record(
            Event.PHASE_BEGIN, phase=phase.index, kind=phase.kind, datacenter=phase.datacenter, hosts=phase.hosts
        )
        self.event(
            "phase",
            f"phase {phase.index + 1}/{len(self.plan.phases)}: {phase.kind} "
            f"{phase.datacenter or 'global'} → {', '.join(phase.hosts)}",
        )
        spec = self.plan.spec
        in_flight = {dc: asyncio.Semaphore(spec.rollout.max_in_flight_per_datacenter) for dc in self.by_dc(phase.hosts)}

        async def one(host: str) -> None:
            async with in_flight[self.hosts[host].plan.datacenter]:
                if self.halted or self.abort is not None or self.spent():
                    return
                if await self.upgrade(host) and phase.kind == "canary":
                    await self.bake(host)

        await asyncio.gather(*(one(h) for h in _by_turns(phase.hosts, lambda h: self.hosts[h].plan.datacenter)))
        failed = [h for h in phase.hosts if self.hosts[h].state in FAILED]
        await self.record(Event.PHASE_END, phase=phase.index, failed=failed)
        if failed:
            await self.on_failure(phase, failed)
        elif self.abort is not None:
            await self.aborted(phase.hosts)
        elif phase.kind == "canary":
            await self.notify("canary-passed", hosts=phase.hosts, datacenter=phase.datacenter)

    async def admit(self, phase: Phase) -> str | None:
        """The window guard at workflow time, on the control worker (it has the calendars and overrides)."""
        assert self.start is not None and self.plan is not None
        now = workflow.now() + timedelta(seconds=self.start.now_offset)
        hops = max(len(self.hosts[h].plan.path) for h in phase.hosts)
        per_host = self.start.host_seconds or _hop_timeout(self.plan) / 4
        waves = -(-len(phase.hosts) // self.plan.spec.rollout.max_in_flight_per_datacenter)
        estimate = per_host * hops * waves + phase.bake
        reason: str | None = await workflow.execute_activity(
            "admit",
            Admission(self.start.run_id, now.isoformat(), estimate, self.start.overrides),
            task_queue=CONTROL_QUEUE,
            start_to_close_timeout=timedelta(seconds=120),
            retry_policy=REPEATABLE,
        )
        return reason

    async def upgrade(self, host: str) -> bool:
        """The host's program (the plan's own steps), once; a worker lost mid-program is _lost, not retried."""
        hp = self.hosts[host].plan
        steps = ["lock-check", *(s.id for s in hp.steps if s.action not in ("stage", "bake", "testinfra"))]
        await self.record(Event.HOST_BEGIN, host=host, steps=steps, path=hp.path)
        self._set(host, "upgrading", " → ".join([hp.from_version, *hp.path]))
        seconds = _hop_timeout(self.plan) * len(hp.path) + 600  # type: ignore[arg-type]
        try:
            done = await self.call("upgrade", self.work(hp.datacenter, [host]), seconds, ONCE)
        except ActivityError as exc:
            return await self._lost(host, exc)
        await self.merge(done)
        if done.ran == "handed-over":
            self.halted = f"lock on {host} was taken over: {self.hosts[host].detail}"
            await self.record(Event.HALT, reason=self.halted)
        return self.hosts[host].state in ON_TARGET

    async def _lost(self, host: str, exc: ActivityError) -> bool:
        """The program's worker died or timed out mid-program: the host was caught mid-step.

        As `resume` does for a killed local run: put it back where it began and verify (a rollback,
        safe to repeat, on whichever worker of the datacenter is alive); then, once, run its program
        again from the start.  Otherwise the host failed, and the policy decides.
        """
        run = self.hosts[host]
        run.touched = True
        why = f"worker lost mid-program ({_cause(exc)})"
        await self.record(Event.HOST_END, host=host, ok=False, error=why, unreachable=False, lost=True)
        await self.record(Event.RECOVER, hosts=[host], failing=False, reason=why)
        self.event("recover", f"{host}: {why}; putting it back", host)
        await self.rollback([host])
        if run.state == HostState.ROLLED_BACK and host not in self._recovered:
            self._recovered.add(host)
            return await self.upgrade(host)
        self.fail(host, HostState.FAILED, why)
        return False

    async def bake(self, host: str) -> None:
        """The canary's bake as a timer: one round of its checks every bake_interval, testinfra at the end."""
        assert self.plan is not None
        spec = self.plan.spec
        hp = self.hosts[host].plan
        steps = [s.id for s in hp.steps if s.action == "bake"]
        self._set(host, "baking", f"{spec.canary.bake:g}s")
        await self.record(Event.BAKE_BEGIN, host=host, seconds=spec.canary.bake, steps=steps, timer=True)
        started = workflow.now()
        rounds = 0
        problem: str | None = None
        while problem is None:
            left = spec.canary.bake - (workflow.now() - started).total_seconds()
            last = left <= spec.canary.bake_interval
            if left > 0:
                await workflow.sleep(min(spec.canary.bake_interval, left))
            problem = await self.check(host, testinfra=last)
            rounds += 1
            if last:
                break
        await self.record(Event.BAKE_END, host=host, ok=problem is None, rounds=rounds, error=problem, ops=[])
        if problem is None:
            self._set(host, HostState.DONE, f"on {hp.path[-1]}, baked {spec.canary.bake:g}s")
        else:
            self.fail(host, HostState.FAILED, f"canary bake: {problem}")

    async def check(self, host: str, testinfra: bool = False) -> str | None:
        assert self.plan is not None
        done = await self.call(
            "check",
            self.work(self.hosts[host].plan.datacenter, [host], testinfra=testinfra),
            _checks_budget(self.plan) + 600,
        )
        for entry in done.records:
            await self.record(**entry)
        return done.problem

    def fail(self, host: str, state: str, detail: str) -> None:
        self.count(self.hosts[host].plan.datacenter)
        self.hosts[host].failure = detail
        self._set(host, state, detail)
        self.event("failure", detail, host)

    # ------------------------------------------------------------ gates and aborts
    async def pass_gate(self, phase: Phase) -> bool:
        """Wait at the phase's manual gate (a signal, or the timeout); its canaries are checked meanwhile."""
        assert self.plan is not None and self.start is not None
        gate = phase.gate
        assert gate is not None
        watch = [h for h in gate.watch if self.hosts[h].state == HostState.DONE]
        run = self.start.run_id
        self.waiting = gate.id  # before the journal says so: a promote sent on reading it must count
        await self.record(Event.GATE_WAIT, gate=gate.id, kind=gate.kind, timeout=gate.timeout, watch=watch)
        self.event(
            "gate",
            f"waiting at gate {gate.id} (at most {gate.timeout:g}s): `upgrader promote {run}` "
            f"to go on, `upgrader abort {run} --reason …` to stop",
        )
        await self.notify("gate-waiting", gate=gate.id, message=f"waiting at gate {gate.id}: upgrader promote {run}")
        started = workflow.now()
        outcome, detail, degraded = GateOutcome.TIMED_OUT, "", ""

        def decided() -> bool:
            return self.abort is not None or gate.id in self.promotes

        while True:
            waited = (workflow.now() - started).total_seconds()
            if decided():
                outcome = GateOutcome.ABORTED if self.abort is not None else GateOutcome.PROMOTED
                break
            if waited >= gate.timeout:
                break
            # Wakes on a decision, or after one bake_interval: a round of the canaries' checks is due.
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    decided, timeout=min(self.plan.spec.canary.bake_interval, gate.timeout - waited)
                )
            if decided():
                continue
            for host in watch:
                problem = await self.check(host)
                if problem is not None:
                    outcome, detail, degraded = GateOutcome.DEGRADED, f"{host}: {problem}", host
                    break
            if degraded:
                break
        self.waiting = None
        decision = self.abort if outcome is GateOutcome.ABORTED else self.promotes.get(gate.id)
        waited = round((workflow.now() - started).total_seconds(), 1)
        await self.record(
            Event.GATE_END,
            gate=gate.id,
            outcome=str(outcome),
            waited=waited,
            decision=decision.to_dict()
            if decision and outcome in (GateOutcome.ABORTED, GateOutcome.PROMOTED)
            else None,
            detail=detail,
        )
        if outcome is GateOutcome.PROMOTED:
            self.event("gate", f"gate {gate.id} promoted by {decision.operator if decision else '?'}")
            await self.notify(
                "promoted",
                gate=gate.id,
                operator=decision.operator if decision else "?",
                message=decision.reason if decision else "",
            )
            return True
        if outcome is GateOutcome.ABORTED:
            await self.aborted(list(gate.watch))
            return False
        if outcome is GateOutcome.DEGRADED:
            self.fail(degraded, HostState.FAILED, f"canary degraded while waiting at gate {gate.id}: {detail}")
            await self.on_failure(self.plan.phases[self.hosts[degraded].plan.phase], [degraded])
            return False
        self.halted = f"no decision at gate {gate.id} within {gate.timeout:g}s ({gate.on_timeout})"
        await self.record(Event.HALT, reason=self.halted)
        self.event("halt", self.halted)
        if gate.on_timeout == "hold":
            self.held = True
            await self.record(Event.HOLD, hosts=[h for h in self.hosts if self.hosts[h].touched])
        else:
            await self.rollback([h for h, r in self.hosts.items() if r.touched or r.state in ON_TARGET])
        return False

    async def aborted(self, current: list[str]) -> None:
        """After an abort, once: record it, then put back every host this run changed (whatever the policy,
        as the local engine's Apply._roll_back_aborted), unless the abort says --keep."""
        assert self.plan is not None and self.abort is not None
        if self._abort_handled:
            return
        self._abort_handled = True
        found = self.abort
        self.halted = f"aborted by {found.operator}: {found.reason}"
        await self.record(
            Event.ABORT, operator=found.operator, reason=found.reason, at_decision=found.at, keep=found.keep
        )
        await self.notify("aborted", operator=found.operator, message=found.reason)
        self.event("halt", self.halted)
        changed = [h for h, r in self.hosts.items() if r.touched or r.state in UPGRADED]
        if found.keep:
            await self.record(Event.ABORT_KEPT, hosts=sorted(changed), wave=current)
            return
        await self.rollback(changed)

    async def on_failure(self, phase: Phase, failed: list[str]) -> None:
        assert self.plan is not None
        spec = self.plan.spec
        policy = spec.rollback.on_failure
        if policy == "hold":
            self.held = True
            self.halted = "held for a human"
            for host in failed:
                self._set(host, HostState.HELD, self.hosts[host].detail)
            await self.record(Event.HOLD, hosts=failed)
            return
        targets = rollback_targets(policy, self.hosts, phase.hosts, failed)
        spent = self.spent()
        if spent:  # no new host starts from here on, whatever the policy
            await self.record(Event.HALT, reason=spent)
            self.event("halt", spent)
        if policy != "host" or spent:
            self.halted = f"{len(failed)} host(s) failed in phase {phase.index + 1}; rollback policy '{policy}'" + (
                f"; {spent}" if spent else ""
            )
        await self.rollback(targets)

    async def rollback(self, hosts: list[str]) -> None:
        if not hosts:
            return
        self.event("rollback", f"rolling back {', '.join(hosts)}")
        await self.record(Event.ROLLBACK_BEGIN, hosts=hosts)
        for host in hosts:
            self._set(host, "rolling-back", f"→ {self.hosts[host].plan.from_version}")

        async def back(host: str) -> None:
            try:
                done = await self.call("rollback", self.work(self.hosts[host].plan.datacenter, [host]), 900)
            except ActivityError as exc:  # every attempt failed: a human must look
                self._set(host, HostState.ROLLBACK_FAILED, f"rollback not confirmed: {_cause(exc)}")
                await self.record(Event.ROLLBACK_END, host=host, ok=False, error=_cause(exc))
                return
            await self.merge(done)

        await asyncio.gather(*(back(h) for h in hosts))


def _cause(exc: ActivityError) -> str:
    cause = exc.cause
    if isinstance(cause, TemporalTimeout) and cause.type is TimeoutType.HEARTBEAT:
        return f"no heartbeat for {HEARTBEAT.total_seconds():g}s"
    return str(cause or exc)


def _hop_timeout(plan: Plan) -> float:
    return hop_timeout(plan.spec)


def _checks_budget(plan: Plan) -> float:
    return checks_budget(plan.spec)
