"""The run policy: everything a run decides, written once, for both drivers.

Phase order, canary and bake, manual gates (promote, abort, --ahead, --keep), the failure policy and
its budgets, rollback targets, redundancy-group slots (upgrades and rollbacks), window admission, the
verdict, timeouts and estimates.  It is a pure state machine: its programs are generators that
yield typed actions (policy_messages: run this host, wait until, record, notify...) and receive
the typed events that answer them (the host's program ended, the wait ended, the gate was
decided...).  No I/O, no threads, no clock: times come in with the events.  The same events give
the same actions, so the Temporal workflow can replay it.

Two drivers carry the actions out and decide nothing: engine/apply.py (the local run, threads) and
temporal/workflow.py (activities, timers and signals).  ``run_program`` is the run;
``host_program`` one host of a phase, ``rollback_program`` one host's rollback: the drivers run
those side by side when the run yields RunHosts / RollBack.  A driver steps one program at a time
(the local driver under a lock), so the state here needs no lock of its own.
"""

from __future__ import annotations

from upgrader.engine import gates
from upgrader.engine.gates import Decision, GateOutcome
from upgrader.engine.host_actions import Back, HandedOver, Ran
from upgrader.engine.policy_messages import (
    AbortAsked,
    Action,
    Admit,
    Admitted,
    Answer,
    AskAbort,
    AwaitChange,
    AwaitDecision,
    Checked,
    CheckRound,
    Clock,
    Fail,
    GateDecided,
    HostFinished,
    Notify,
    OpenGate,
    Record,
    RollBack,
    RollBackHost,
    RolledBack,
    RunHost,
    RunHosts,
    Say,
    SetState,
    Stage,
    Staged,
    Tested,
    Testinfra,
    Unstage,
    WaitUntil,
    Woke,
)
from upgrader.engine.policy_state import TICK, PolicyState, Program, Recovery
from upgrader.engine.progress import ProgressKind
from upgrader.engine.verdict import Outcome, rollback_targets, verdict
from upgrader.errors import ExitCode
from upgrader.models.plan import Phase
from upgrader.vocabulary import FAILED, NEEDS_A_HUMAN, ON_TARGET, UPGRADED, Event, HostState, RunStatus


class RunPolicy(PolicyState):
    """The run's programs (see the module's docstring); the state they share is PolicyState's."""

    # ------------------------------------------------------------ the run
    def run_program(self, recovery: Recovery | None = None) -> Program[Outcome]:
        """The run, after the locks: recover, stage, the phases in order, the verdict."""
        plan = self.plan
        recovery = recovery or Recovery()
        yield Notify("run-started", {"hosts": len(plan.hosts)})
        if recovery.back:
            yield Record(Event.RECOVER, {"hosts": recovery.back, "failing": recovery.failing})
            for host in recovery.back:
                self.hosts[host].touched = True
            yield from self.rollback(recovery.back, failing=recovery.failing)
            stuck = [
                h for h in recovery.back if self.hosts[h].state not in (HostState.ROLLED_BACK, HostState.HANDED_OVER)
            ]
            if stuck:
                # A host the put-back could not verify is on no verified release: going on with the plan would
                # run it again from there (its precheck then fails "before the upgrade") and hide that it needs a
                # human.  The run stops; the verdict names it (exit 4).
                self.halted = f"the put-back of {', '.join(stuck)} did not end verified; the run goes no further"
                return (yield from self.conclude())
        if recovery.failing:
            # The killed run was already handling a failure: finish that, never start new hosts.
            self.failures = max(1, recovery.failures)
            policy = "run" if recovery.aborted else self.spec.rollback.on_failure  # an abort puts back all
            phases = {self.hosts[h].plan.phase for h in recovery.back}
            targets = (
                []
                if recovery.keep
                else sorted(
                    h
                    for h in recovery.done
                    if policy == "run" or (policy == "wave" and self.hosts[h].plan.phase in phases)
                )
            )
            for host in targets:
                self.hosts[host].touched = True
            yield from self.rollback(targets)
            self.halted = "resumed a run that was handling a failure; its rollback is complete"
            return (yield from self.conclude())
        pending = [h for h in self.hosts if h not in recovery.done]
        if pending:
            staged = yield Stage(pending)
            assert isinstance(staged, Staged)
            if staged.failed:
                self.failures += len(staged.failed)
                yield Unstage(pending, staged.failed)
                return Outcome(
                    ExitCode.FAILED_ROLLED_BACK,
                    RunStatus.STAGE_FAILED,
                    "staging failed; no live change was made",
                    self.hosts,
                )
        for phase in plan.phases:
            if self.halted:
                break
            todo = [h for h in phase.hosts if h not in recovery.done]
            if todo:
                yield from self.run_phase(phase.model_copy(update={"hosts": todo}))
        return (yield from self.conclude())

    def conclude(self) -> Program[Outcome]:
        if self.signalled:
            self.resumable = self.abort is None and not self.failures and not self.held
            yield Record(
                Event.HALT,
                {
                    "reason": self.halted,
                    "signal": self.signalled,
                    "hard": self.stop_now,
                    "resumable": self.resumable,
                    "left_on_target": sorted(h for h, r in self.hosts.items() if r.state in UPGRADED),
                },
            )
        resumable = self.resumable and self.abort is None and not self.failures and not self.held
        code, status, message = verdict(
            self.hosts,
            held=self.held,
            failures=self.failures,
            aborted=self.abort is not None,
            halted=self.halted,
            target=self.plan.target_version,
            resumable=resumable,
        )
        if resumable and code == ExitCode.HALTED:
            message += f"; `upgrader resume {self.run_id}` carries on"
        kept = sorted(h.name for h in self.hosts.values() if h.state in NEEDS_A_HUMAN and h.name in self.locked)
        if kept:  # the one other case a lock outlives the run: it is resumable, and the message says so
            message += (
                f"; {', '.join(kept)} stay(s) locked by this run: `upgrader resume {self.run_id}` "
                f"puts them back once they answer, or `upgrader unlock {self.plan.component} -i INVENTORY "
                "--reason …` releases them"
            )
        return Outcome(
            code,
            status,
            message,
            self.hosts,
            resumable=(resumable and code == ExitCode.HALTED) or code == ExitCode.ROLLBACK_FAILED,
        )

    def closing(self, outcome: Outcome, stuck: list[str]) -> tuple[Outcome, list[Action]]:
        """After the locks were released (``stuck``: hosts that kept theirs): the run's last word."""
        if stuck:  # a lock no one released outlives the run: a human must act, and is told how
            outcome = Outcome(
                ExitCode.ROLLBACK_FAILED,
                outcome.status if outcome.exit_code == ExitCode.ROLLBACK_FAILED else RunStatus.ROLLBACK_FAILED,
                f"{outcome.message}; {', '.join(stuck)} could not be unlocked (no answer at the end): "
                f"`upgrader unlock {self.plan.component} -i INVENTORY --reason … --limit {','.join(stuck)}` "
                "once they answer",
                outcome.hosts,
                resumable=True,
            )
        end = {
            "status": outcome.status,
            "exit_code": int(outcome.exit_code),
            "message": outcome.message,
            "resumable": outcome.resumable,
            "hosts": {
                h.name: {"state": h.state, "detail": h.detail, "version": h.version()} for h in self.hosts.values()
            },
        }
        event = {
            ExitCode.OK: "finished",
            ExitCode.FAILED_ROLLED_BACK: "rolled-back",
            ExitCode.HALTED: "aborted" if outcome.status == RunStatus.ABORTED else "halted",
        }.get(outcome.exit_code, "failed")
        # run-end is the journal's last word: it comes after the locks are released.
        return outcome, [
            Record(Event.RUN_END, end),
            Notify(event, {"status": outcome.status, "message": outcome.message}),
        ]

    # ------------------------------------------------------------ phases
    def run_phase(self, phase: Phase) -> Program[None]:
        if phase.gate is not None and not (yield from self.pass_gate(phase)):
            return
        if (yield from self.aborted()):  # between phases: nothing of this one started
            yield from self.roll_back_aborted([])
            return
        if phase.pause_before:
            yield Say(ProgressKind.PAUSE, f"pausing {phase.pause_before:g}s before {phase.datacenter}")
            now = (yield Clock()).now
            woke = yield WaitUntil(now + phase.pause_before, f"pause before {phase.datacenter}")
            yield from self.abort_in(woke)
            if self.halted or (yield from self.aborted()):
                if self.abort is not None:
                    yield from self.roll_back_aborted([])
                return
        if self.admission:
            admitted = yield Admit(phase.index, self.estimate(phase))
            assert isinstance(admitted, Admitted)
            if admitted.reason:
                self.halted = f"stopped before phase {phase.index + 1}: {admitted.reason}"
                self.resumable = True  # the window guard says when: resume then
                yield Record(Event.HALT, {"reason": self.halted, "resumable": True})
                yield Say(ProgressKind.HALT, self.halted)
                return
        yield Record(
            Event.PHASE_BEGIN,
            {"phase": phase.index, "kind": phase.kind, "datacenter": phase.datacenter, "hosts": phase.hosts},
        )
        yield Say(
            ProgressKind.PHASE,
            f"phase {phase.index + 1}/{len(self.plan.phases)}: {phase.kind} "
            f"{phase.datacenter or 'global'} → {', '.join(phase.hosts)}",
        )
        self.phase = phase
        yield RunHosts(phase.index, self.by_turns(phase.hosts))
        failed = [h for h in phase.hosts if self.hosts[h].state in FAILED]
        yield Record(Event.PHASE_END, {"phase": phase.index, "failed": failed})
        cut = [h for h in phase.hosts if self.hosts[h].state == HostState.VERIFIED]  # bakes a stop cut short
        if failed:
            yield from self.on_failure(phase, failed)
            cut = [h for h in cut if self.hosts[h].state == HostState.VERIFIED]  # the policy left them
            if cut:
                yield from self.put_back_cut(cut)
        elif self.abort is not None or (yield from self.aborted()):
            yield from self.roll_back_aborted(phase.hosts)
        elif cut:
            yield from self.put_back_cut(cut)
        elif phase.kind == "canary":
            yield Notify("canary-passed", {"hosts": phase.hosts, "datacenter": phase.datacenter})

    def host_program(self, host: str) -> Program[None]:
        """One host of the phase under way (RunHosts): its slots (in flight per datacenter, redundancy
        groups), its program, a canary's bake."""
        phase = self.phase
        assert phase is not None
        dc = self.hosts[host].plan.datacenter
        while self.in_flight.get(dc, 0) >= self.spec.rollout.max_in_flight_per_datacenter:
            yield AwaitChange()
        self.in_flight[dc] = self.in_flight.get(dc, 0) + 1
        try:
            if self.halted or (yield from self.aborted()) or self.budgets.spent(self.failures, self.failures_in):
                return
            if not (yield from self.may_go_down(host)):
                return
            try:
                if (yield from self.upgrade(host)) and phase.kind == "canary":
                    yield from self.bake(host)
            finally:
                self.settle(host)
        finally:
            self.in_flight[dc] -= 1

    def may_go_down(self, host: str) -> Program[bool]:
        """Take the host's redundancy-group slots before its live program; False: it must not start."""
        while True:
            got = self.down.try_take(host, in_phase=True)
            if got is False and self.halted is not None:
                got = "stopped while waiting for a slot in group " + self.down.full(host)[0]
            if got is not False:
                break
            yield AwaitChange()
        if isinstance(got, str):
            yield SetState(host, self.hosts[host].state, f"not started: {got}")
            yield Record(Event.HOST_WITHHELD, {"host": host, "reason": got})
            return False
        return True

    def settle(self, host: str) -> None:
        """After its program: a verified (or never stopped) host is up again; a failed one stays down until
        its rollback is verified."""
        run = self.hosts[host]
        if run.state in (HostState.FAILED, HostState.UNREACHABLE) and run.touched:
            self.down.failed(host)  # a member waiting in this phase for its slot must not wait for ever
            return
        self.down.back(host)

    def upgrade(self, host: str) -> Program[bool]:
        """The host's program; True if it is on the target, verified."""
        hp = self.hosts[host].plan
        seconds = self.timeouts.upgrade(len(hp.path))
        ended = yield RunHost(host, seconds)
        assert isinstance(ended, HostFinished)
        if ended.lost:
            return (yield from self.lost(host, ended.lost))
        if ended.ran in (Ran.FAILED, Ran.UNREACHABLE):
            self.count(host)
        if ended.ran is Ran.HANDED_OVER:
            self.halted = f"lock on {host} was taken over: {self.hosts[host].detail}"
            yield Record(Event.HALT, {"reason": self.halted})
        return ended.ran is Ran.OK

    def lost(self, host: str, why: str) -> Program[bool]:
        """The program's worker died mid-program (Temporal): the host was caught mid-step.  As `resume` does
        for a killed local run: put it back where it began and verify; then, once, run its program again."""
        run = self.hosts[host]
        run.touched = True
        yield Record(Event.HOST_END, {"host": host, "ok": False, "error": why, "unreachable": False, "lost": True})
        yield Record(Event.RECOVER, {"hosts": [host], "failing": False, "reason": why})
        yield Say(ProgressKind.RECOVER, f"{host}: {why}; putting it back", host)
        yield from self.rollback([host])
        if run.state == HostState.ROLLED_BACK and host not in self.recovered:
            self.recovered.add(host)
            return (yield from self.upgrade(host))
        yield from self.fail(host, HostState.FAILED, why)
        return False

    def fail(self, host: str, state: HostState, detail: str) -> Program[None]:
        self.count(host)
        yield Fail(host, state, detail)

    def bake(self, host: str) -> Program[None]:
        """The canary's bake: one round of its checks every bake_interval, testinfra at the end.

        The controller, not the agent, keeps the time, so a stop or an abort ends the bake at once."""
        hp = self.hosts[host].plan
        bake, interval = self.spec.canary.bake, max(self.spec.canary.bake_interval, TICK)
        yield SetState(host, HostState.BAKING, f"{bake:g}s")
        yield Record(
            Event.BAKE_BEGIN,
            {"host": host, "seconds": bake, "steps": [s.id for s in hp.steps if s.action == "bake"]}
            | {"rounds_from": "controller"},
        )
        started = (yield Clock()).now
        rounds = 0
        while True:
            checked = yield CheckRound(host, True, self.timeouts.check_round())
            assert isinstance(checked, Checked)
            problem = checked.problem
            rounds += 1
            if isinstance(problem, HandedOver):
                self.halted = f"lock on {host} was taken over: {problem}"
                yield Record(
                    Event.BAKE_END,
                    {"host": host, "ok": False, "rounds": rounds, "error": self.halted, "handed_over": True},
                )
                yield SetState(host, HostState.HANDED_OVER, problem)
                yield Record(Event.HALT, {"reason": self.halted})
                return
            if problem is not None:
                yield Record(
                    Event.BAKE_END,
                    {"host": host, "ok": False, "rounds": rounds, "error": problem, "ops": checked.ops},
                )
                state = HostState.UNREACHABLE if problem.startswith("unreachable") else HostState.FAILED
                yield from self.fail(host, state, f"canary bake: {problem}" if state == HostState.FAILED else problem)
                return
            left = bake - (checked.now - started)
            if left <= 0:
                break
            yield SetState(host, HostState.BAKING, f"{left:.0f}s of {bake:g}s left")
            woke = yield WaitUntil(checked.now + min(interval, left), "bake", host)
            yield from self.abort_in(woke)
            if isinstance(woke, Woke) and woke.cut:
                cut = f"bake cut short after {woke.now - started:.1f}s of {bake:g}s: " + (
                    "aborted" if self.abort is not None else self.halted or "stopped"
                )
                yield Record(Event.BAKE_END, {"host": host, "ok": False, "cut": True, "rounds": rounds, "error": cut})
                yield SetState(host, HostState.VERIFIED, f"on {hp.path[-1]}, {cut}")
                return
        yield Record(Event.BAKE_END, {"host": host, "ok": True, "rounds": rounds})
        tested = yield Testinfra(host, "at the end of the bake")
        if isinstance(tested, Tested) and not tested.ok:
            self.count(host)
            return
        yield SetState(host, HostState.DONE, f"on {hp.path[-1]}, baked {bake:g}s")

    # ------------------------------------------------------------ manual gates and aborts
    def aborted(self) -> Program[bool]:
        """Has an operator aborted this run (`upgrader abort`)?  Asked before each host starts."""
        if self.abort is None:
            asked = yield AskAbort()
            assert isinstance(asked, AbortAsked)
            yield from self.take_abort(asked.decision)
        return self.abort is not None

    def abort_in(self, answer: Answer) -> Program[None]:
        """An abort that came with a wait's end."""
        if isinstance(answer, Woke) and answer.abort is not None:
            yield from self.take_abort(answer.abort)

    def take_abort(self, found: Decision | None) -> Program[None]:
        if found is None or self.abort is not None:
            return
        self.abort = found
        self.halted = f"aborted by {found.operator}: {found.reason}"
        # at_decision: when the operator decided (``at`` is the record's own time).
        yield Record(
            Event.ABORT,
            {"operator": found.operator, "reason": found.reason, "at_decision": found.at, "keep": found.keep},
        )
        yield Say(ProgressKind.HALT, self.halted)
        yield Notify("aborted", {"operator": found.operator, "message": found.reason})

    def roll_back_aborted(self, current: list[str]) -> Program[None]:
        """After an abort, once: put every host this run changed back on its starting release, verified,
        whatever the failure policy (Argo Rollouts' abort); with ``--keep`` they stay where they are.

        ``current`` (the wave the abort caught) is kept for the journal: it is no longer the limit."""
        if self._abort_handled:
            return
        self._abort_handled = True
        changed = [h for h, r in self.hosts.items() if r.touched or r.state in UPGRADED]
        assert self.abort is not None
        if self.abort.keep:
            for host in changed:
                if self.hosts[host].state == HostState.VERIFIED:  # its bake was cut: on the target, checked
                    path = self.hosts[host].plan.path
                    yield SetState(host, HostState.DONE, f"on {path[-1]}, kept by abort --keep (bake cut short)")
            yield Record(Event.ABORT_KEPT, {"hosts": sorted(changed), "wave": current})
            return
        yield from self.rollback(changed)

    def put_back_cut(self, hosts: list[str]) -> Program[None]:
        """A stop cut these canaries' bakes short: unjudged, they go back (a second signal leaves them to resume)."""
        if self.stop_now:
            yield Record(
                Event.ROLLBACK_WITHHELD,
                {"hosts": hosts, "reason": "stopped at once (second signal): `upgrader resume` puts them back"},
            )
            return
        yield from self.rollback(hosts, failing=False)

    def pass_gate(self, phase: Phase) -> Program[bool]:
        """Wait at the phase's manual gate; True to go on.  The canaries it watches are checked meanwhile."""
        gate = phase.gate
        assert gate is not None
        watch = [h for h in gate.watch if self.hosts[h].state == HostState.DONE]
        run = self.run_id
        yield OpenGate(gate.id)  # before the journal says so: a promote sent on reading it must count
        yield Record(Event.GATE_WAIT, {"gate": gate.id, "kind": gate.kind, "timeout": gate.timeout, "watch": watch})
        yield Say(
            ProgressKind.GATE,
            f"waiting at gate {gate.id} (at most {gate.timeout:g}s): "
            f"`upgrader promote {run}` to go on, `upgrader abort {run} --reason …` to stop",
        )
        yield Notify("gate-waiting", {"gate": gate.id, "message": f"waiting at gate {gate.id}: upgrader promote {run}"})
        started = (yield Clock()).now
        deadline, next_round = started + gate.timeout, started
        outcome, decision, detail, degraded = GateOutcome.TIMED_OUT, None, "", ""
        last = started
        while True:
            ended = yield AwaitDecision(gate.id, min(deadline, next_round) if watch else deadline, deadline)
            assert isinstance(ended, GateDecided)
            last = ended.now
            if ended.decision is not None:
                decision = ended.decision
                outcome = GateOutcome.ABORTED if decision.kind is gates.DecisionKind.ABORT else GateOutcome.PROMOTED
                break
            if ended.stopped:
                outcome = GateOutcome.STOPPED
                break
            if ended.now >= deadline:
                break
            if watch and ended.now >= next_round:
                next_round = ended.now + self.spec.canary.bake_interval
                for host in watch:
                    checked = yield CheckRound(host, False, self.timeouts.check_round())
                    assert isinstance(checked, Checked)
                    last = checked.now
                    if checked.problem is not None:
                        outcome, detail, degraded = GateOutcome.DEGRADED, f"{host}: {checked.problem}", host
                        break
                if degraded:
                    break
        yield OpenGate(None)
        waited = round(last - started, 1)
        yield Record(
            Event.GATE_END,
            {
                "gate": gate.id,
                "outcome": str(outcome),
                "waited": waited,
                "decision": decision.to_dict() if decision else None,
                "detail": detail,
            },
        )
        if outcome is GateOutcome.PROMOTED:
            who = decision.operator if decision else "?"
            ahead = " (approved ahead, before the run reached it)" if decision and decision.ahead else ""
            yield Say(ProgressKind.GATE, f"gate {gate.id} promoted by {who}{ahead}")
            yield Notify("promoted", {"gate": gate.id, "operator": who, "message": decision.reason if decision else ""})
            return True
        if outcome is GateOutcome.STOPPED:
            if (yield from self.aborted()):
                yield from self.roll_back_aborted(list(gate.watch))
            return False
        if outcome is GateOutcome.ABORTED:
            yield from self.take_abort(decision)
            yield from self.roll_back_aborted(list(gate.watch))  # not promoted: the canaries it judged are the wave
            return False
        if outcome is GateOutcome.DEGRADED:
            why = f"canary degraded while waiting at gate {gate.id}: {detail}"
            yield from self.fail(degraded, HostState.FAILED, why)
            yield from self.on_failure(self.plan.phases[self.hosts[degraded].plan.phase], [degraded])
            return False
        self.halted = f"no decision at gate {gate.id} within {gate.timeout:g}s ({gate.on_timeout})"
        yield Record(Event.HALT, {"reason": self.halted})
        yield Say(ProgressKind.HALT, self.halted)
        if gate.on_timeout == "hold":
            self.held = True
            yield Record(Event.HOLD, {"hosts": [h for h in self.hosts if self.hosts[h].touched]})
        else:
            yield from self.rollback([h for h, r in self.hosts.items() if r.touched or r.state in ON_TARGET])
        return False

    # ------------------------------------------------------------ failures and rollback
    def on_failure(self, phase: Phase, failed: list[str]) -> Program[None]:
        policy = self.spec.rollback.on_failure
        if policy == "hold":
            self.held = True
            self.halted = "held for a human"
            for host in failed:
                yield SetState(host, HostState.HELD, self.hosts[host].detail)
                self.down.stuck(host)
            yield Record(Event.HOLD, {"hosts": failed})
            return
        targets = rollback_targets(policy, self.hosts, phase.hosts, failed)
        spent = self.budgets.spent(self.failures, self.failures_in)
        if spent:  # no new host starts from here on, whatever the policy
            yield Record(Event.HALT, {"reason": spent})
            yield Say(ProgressKind.HALT, spent)
        if policy != "host" or spent:
            self.halted = f"{len(failed)} host(s) failed in phase {phase.index + 1}; rollback policy '{policy}'" + (
                f"; {spent}" if spent else ""
            )
        yield from self.rollback(targets)

    def rollback(self, hosts: list[str], *, failing: bool = True) -> Program[None]:
        """Put ``hosts`` back where they began.  ``failing``: a failure or abort, not a stop's put-back
        (resume reads the difference).  After a second signal no rollback starts: resume does it."""
        if not hosts:
            return
        if self.stop_now:
            yield Record(
                Event.ROLLBACK_WITHHELD,
                {"hosts": hosts, "reason": "stopped at once (second signal): `upgrader resume` puts them back"},
            )
            return
        yield Say(ProgressKind.ROLLBACK, f"rolling back {', '.join(hosts)}")
        yield Record(Event.ROLLBACK_BEGIN, {"hosts": hosts, "failing": failing})
        yield RollBack(self.down.down_first(hosts))

    def rollback_program(self, host: str) -> Program[None]:
        """One host's rollback, within its redundancy groups' limits (a host counted down already goes first)."""
        while (got := self.down.try_take(host, force=self.hosts[host].state not in UPGRADED)) is False:
            yield AwaitChange()
        if isinstance(got, str):  # its redundancy group has members down for good: it stays up, verified
            run = self.hosts[host]
            yield SetState(host, run.state, f"{run.detail}; not rolled back: {got}")
            yield Record(Event.ROLLBACK_WITHHELD, {"host": host, "reason": got})
            return
        ended = yield RollBackHost(host, self.timeouts.rollback())
        assert isinstance(ended, RolledBack)
        if ended.raised:
            self.down.stuck(host)  # unknown: counted down for the rest of the run
        else:
            (self.down.back if ended.back in (Back.ROLLED_BACK, Back.HANDED_OVER) else self.down.stuck)(host)
