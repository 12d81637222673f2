"""Executing a plan: lock, stage, canary + bake, waves, automatic rollback, release.

The invariant: every host ends on a known version — the one it started on or
the target — with its service verified, or is named in the summary as needing
a human.  Each host program is journaled before it runs and after it ends;
the agent journals each operation on the host itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

from upgrader.engine import gates, programs, remote
from upgrader.engine.endpoints import Pool
from upgrader.engine.groups import Unavailable
from upgrader.engine.host_actions import HANDED_OVER, HostActions, HostRun, Ran
from upgrader.engine.journal import Journal
from upgrader.engine.progress import Progress
from upgrader.engine.vocabulary import (
    NEEDS_A_HUMAN,
    ON_TARGET,
    UPGRADED,
    Event,
    HostState,
    HostSummary,
    RunEnd,
    RunStatus,
)
from upgrader.errors import ExitCode
from upgrader.models.plan import Phase, Plan
from upgrader.planning import budgets

TICK = 0.5  # seconds: the longest a wait (bake, pause, gate) goes without looking for a stop or an abort
HEARTBEAT = 10.0  # seconds between "… s left" lines while a wait goes on


@dataclass
class Recovery:
    """What ``resume`` found in the journal of a killed run."""

    done: set[str] = field(default_factory=set)  # finished and verified on the target
    back: list[str] = field(default_factory=list)  # caught mid-step or failed: roll back to where they began
    failing: bool = False  # the run was already rolling back or halting
    failures: int = 0
    aborted: bool = False  # an operator aborted it: everything it changed goes back
    keep: bool = False  # ... unless the abort said --keep
    expect: dict[str, str | None] = field(default_factory=dict)  # version each host may be on (None: either)


@dataclass
class Outcome:
    exit_code: ExitCode
    status: RunStatus
    message: str
    hosts: dict[str, HostRun] = field(default_factory=dict)
    resumable: bool = False  # halted part-way: `upgrader resume RUN` carries on


class Apply:
    def __init__(
        self,
        plan: Plan,
        pool: Pool,
        journal: Journal,
        progress: Progress,
        *,
        artifacts: Path,
        operator: str,
        break_lock: str | None = None,
        python: str = "python3",
        admit: Callable[[float], str | None] | None = None,
        notify: Callable[..., Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        host_seconds: float | None = None,
    ) -> None:
        self.plan = plan
        self.spec = plan.spec
        self.pool = pool
        self.journal = journal
        self.progress = progress
        self.actions = HostActions(
            plan,
            pool,
            journal,
            progress,
            artifacts=artifacts,
            operator=operator,
            break_lock=break_lock,
            python=python,
            on_fail=self._count,
        )
        self.admit = admit
        self.notify = notify or (lambda *a, **k: None)
        self.sleep = sleep
        self.host_seconds = host_seconds  # measured in past runs, when known
        self.hosts = self.actions.hosts
        self.failures = 0
        self.failures_in: dict[str, int] = {}  # per datacenter; like ``failures``, for the whole run
        self.budgets = budgets.of_plan(plan)
        self.down = Unavailable(plan.groups)  # redundancy groups: members down now (engine/groups.py)
        self.halted: str | None = None
        self.resumable = False  # the halt is one `resume` may carry on from (a signal, a closed window)
        self.signalled: str | None = None  # the signal that stopped the run (SIGINT, SIGTERM)
        self.stop_now = False  # a second signal: stop at the next safe point, start no rollback either
        self.held = False
        self.abort: gates.Decision | None = None
        self._abort_handled = False
        self._lock = threading.Lock()

    def _count(self, host: str) -> None:
        """A host failed: counted against the run's and its datacenter's budgets."""
        with self._lock:
            self.failures += 1
            dc = self.hosts[host].plan.datacenter
            self.failures_in[dc] = self.failures_in.get(dc, 0) + 1

    # ------------------------------------------------------------ the run
    def run(self, recovery: Recovery | None = None) -> Outcome:
        """Execute the plan; with ``recovery`` (from ``resume``) first put caught-mid-step hosts back."""
        plan = self.plan
        recovery = recovery or Recovery()
        for h in plan.hosts:
            self.progress.host_state(h.host, HostState.PENDING, " → ".join([h.from_version, *h.path]))
        for host in recovery.done:
            self.actions.set(host, HostState.DONE, f"on {self.hosts[host].plan.path[-1]} (before resume)")
        self.actions.check_artifacts()
        self.lock_hosts(recovery)
        self.notify(
            "run-started",
            component=plan.component,
            version=plan.target_version,
            run=self.journal.run_id,
            hosts=len(plan.hosts),
        )
        try:
            outcome = self._execute(recovery)
        finally:
            stuck = self.release_locks()
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
        # run-end is the journal's last word: it comes after the locks are released.
        self.journal.record(
            Event.RUN_END,
            **RunEnd(
                status=outcome.status,
                exit_code=int(outcome.exit_code),
                message=outcome.message,
                handshake_retries=self.pool.handshake_retries,
                resumable=outcome.resumable,
                hosts={
                    h.name: HostSummary(state=h.state, detail=h.detail, version=self._version_of(h))
                    for h in self.hosts.values()
                },
            ),
        )
        event = {
            ExitCode.OK: "finished",
            ExitCode.FAILED_ROLLED_BACK: "rolled-back",
            ExitCode.HALTED: "aborted" if outcome.status == RunStatus.ABORTED else "halted",
        }.get(outcome.exit_code, "failed")
        self.notify(
            event,
            component=self.plan.component,
            version=self.plan.target_version,
            run=self.journal.run_id,
            status=outcome.status,
            message=outcome.message,
        )
        return outcome

    def _execute(self, recovery: Recovery) -> Outcome:
        plan = self.plan
        if recovery.back:
            self.journal.record(Event.RECOVER, hosts=recovery.back, failing=recovery.failing)
            for host in recovery.back:
                self.hosts[host].touched = True
            self.rollback(recovery.back)
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
            self.rollback(targets)
            self.halted = "resumed a run that was handling a failure; its rollback is complete"
            return self._conclude()
        pending = [h for h in self.hosts if h not in recovery.done]
        if pending and not self.stage(pending):
            return self._finish(
                ExitCode.FAILED_ROLLED_BACK, RunStatus.STAGE_FAILED, "staging failed; no live change was made"
            )
        for phase in plan.phases:
            if self.halted:
                break
            todo = [h for h in phase.hosts if h not in recovery.done]
            if todo:
                self.run_phase(phase.model_copy(update={"hosts": todo}))
        return self._conclude()

    def _conclude(self) -> Outcome:
        if self.signalled:
            self.resumable = self.abort is None and not self.failures and not self.held
            self.journal.record(
                Event.HALT,
                reason=self.halted,
                signal=self.signalled,
                hard=self.stop_now,
                resumable=self.resumable,
                left_on_target=sorted(h for h, r in self.hosts.items() if r.state in UPGRADED),
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
            message += f"; `upgrader resume {self.journal.run_id}` carries on"
        kept = sorted(h.name for h in self.hosts.values() if h.state in NEEDS_A_HUMAN and h.name in self.actions.locked)
        if kept:  # the one other case a lock outlives the run: it is resumable, and the message says so
            message += (
                f"; {', '.join(kept)} stay(s) locked by this run: `upgrader resume {self.journal.run_id}` "
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

    @staticmethod
    def _version_of(h: HostRun) -> str | None:
        return h.version()

    def _finish(self, code: ExitCode, status: RunStatus, message: str) -> Outcome:
        return Outcome(code, status, message, self.hosts)

    # ------------------------------------------------------------ locks and staging
    def lock_hosts(self, recovery: Recovery | None = None) -> None:
        """Take every host's lock and check its facts still match the plan; refuse as a whole."""
        self.actions.lock(recovery.expect if recovery is not None else None)

    def release_locks(self) -> list[str]:
        """Release this run's host locks; the hosts that kept them because they did not answer."""
        return self.actions.release()

    def stage(self, hosts: list[str]) -> bool:
        failed = self.actions.stage(hosts)
        if not failed:
            return True
        self.failures += len(failed)
        self.actions.unstage(hosts, failed)
        return False

    # ------------------------------------------------------------ phases
    def run_phase(self, phase: Phase) -> None:
        if phase.gate is not None and not self._pass_gate(phase):
            return
        if self._aborted():  # between phases: nothing of this one started
            self._roll_back_aborted([])
            return
        if phase.pause_before:
            self.progress.event("pause", f"pausing {phase.pause_before:g}s before {phase.datacenter}")
            self.wait(phase.pause_before, f"pause before {phase.datacenter}")
            if self.halted or self._aborted():
                if self.abort is not None:
                    self._roll_back_aborted([])
                return
        if self.admit is not None:
            reason = self.admit(self._estimate(phase))
            if reason:
                self.halted = f"stopped before phase {phase.index + 1}: {reason}"
                self.resumable = True  # the window guard says when: resume then
                self.journal.record(Event.HALT, reason=self.halted, resumable=True)
                self.progress.event("halt", self.halted)
                return
        self.journal.record(
            Event.PHASE_BEGIN, phase=phase.index, kind=phase.kind, datacenter=phase.datacenter, hosts=phase.hosts
        )
        self.progress.event(
            "phase",
            f"phase {phase.index + 1}/{len(self.plan.phases)}: {phase.kind} "
            f"{phase.datacenter or 'global'} → {', '.join(phase.hosts)}",
        )
        limit = self.spec.rollout.max_in_flight_per_datacenter
        in_flight = {dc: threading.Semaphore(limit) for dc in {self.hosts[h].plan.datacenter for h in phase.hosts}}

        def one(host: str) -> None:
            with in_flight[self.hosts[host].plan.datacenter]:
                if self.halted or self._aborted() or self._budget_spent() or not self._may_go_down(host):
                    return
                try:
                    if self._upgrade(host) and phase.kind == "canary":
                        self._bake(host)
                finally:
                    self._settle(host)

        # At most --parallel threads, not one per host: a 10,000-host wave must not start 10,000.
        # Hosts go in turn by datacenter, so one datacenter's gate cannot hold every worker.
        workers = max(1, min(len(phase.hosts), self.pool.parallel))
        with ThreadPoolExecutor(max_workers=workers) as ex:
            list(ex.map(one, _by_turns(phase.hosts, lambda h: self.hosts[h].plan.datacenter)))
        failed = [h for h in phase.hosts if self.hosts[h].state in (HostState.FAILED, HostState.UNREACHABLE)]
        self.journal.record(Event.PHASE_END, phase=phase.index, failed=failed)
        cut = [h for h in phase.hosts if self.hosts[h].state == HostState.VERIFIED]  # bakes a stop cut short
        if failed:
            self._on_failure(phase, failed)
            cut = [h for h in cut if self.hosts[h].state == HostState.VERIFIED]  # the policy left them
            if cut:
                self._put_back_cut(cut)
        elif self.abort is not None or self._aborted():
            self._roll_back_aborted(phase.hosts)
        elif cut:
            self._put_back_cut(cut)
        elif phase.kind == "canary":
            self.notify(
                "canary-passed",
                component=self.plan.component,
                version=self.plan.target_version,
                run=self.journal.run_id,
                hosts=phase.hosts,
                datacenter=phase.datacenter,
            )

    # ------------------------------------------------------------ manual gates and aborts
    def _aborted(self) -> bool:
        """Has an operator aborted this run (`upgrader abort`)?  Looked up before each host starts."""
        if self.abort is None:
            found = gates.aborted(self.journal.directory)
            if found is None:
                return False
            with self._lock:
                if self.abort is None:
                    self.abort = found
                    self.halted = f"aborted by {found.operator}: {found.reason}"
                    self.journal.record(
                        Event.ABORT, operator=found.operator, reason=found.reason, at_decision=found.at, keep=found.keep
                    )
                    self.progress.event("halt", self.halted)
                    self.notify(
                        "aborted",
                        component=self.plan.component,
                        version=self.plan.target_version,
                        run=self.journal.run_id,
                        operator=found.operator,
                        message=found.reason,
                    )
        return True

    def _roll_back_aborted(self, current: list[str]) -> None:
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
                    self.actions.set(
                        host,
                        HostState.DONE,
                        f"on {self.hosts[host].plan.path[-1]}, kept by abort --keep (bake cut short)",
                    )
            self.journal.record(Event.ABORT_KEPT, hosts=sorted(changed), wave=current)
            return
        self.rollback(changed)

    def _put_back_cut(self, hosts: list[str]) -> None:
        """A stop cut these canaries' bakes short: unjudged, they go back (a second signal leaves them to resume)."""
        if self.stop_now:
            self.journal.record(
                Event.ROLLBACK_WITHHELD,
                hosts=hosts,
                reason="stopped at once (second signal): `upgrader resume` puts them back",
            )
            return
        self.rollback(hosts, failing=False)

    # ------------------------------------------------------------ waits (bakes, pauses, gates)
    def stopping(self) -> bool:
        """Should a wait end now: a stop (signal, halt) or an operator's abort."""
        return self.halted is not None or self._aborted()

    def wait(self, seconds: float, what: str, host: str | None = None) -> bool:
        """Wait ``seconds`` in steps of at most TICK, with a heartbeat; False if a stop or abort ended it early.

        Time is counted as the steps asked for, so a test's instant ``sleep`` makes an instant wait."""
        left = seconds
        beat = _Heartbeat(self.progress, what, host)
        while left > 0:
            if self.stopping():
                return False
            beat(left)
            step = min(TICK, left)
            self.sleep(step)
            left -= step
        return not self.stopping()

    def _pass_gate(self, phase: Phase) -> bool:
        """Wait at the phase's manual gate; True to go on.  The canaries it watches are checked meanwhile."""
        gate = phase.gate
        assert gate is not None
        watch = [h for h in gate.watch if self.hosts[h].state == HostState.DONE]
        run = self.journal.run_id
        self.journal.record(Event.GATE_WAIT, gate=gate.id, kind=gate.kind, timeout=gate.timeout, watch=watch)
        self.progress.event(
            "gate",
            f"waiting at gate {gate.id} (at most {gate.timeout:g}s): "
            f"`upgrader promote {run}` to go on, `upgrader abort {run} --reason …` to stop",
        )
        self.notify(
            "gate-waiting",
            component=self.plan.component,
            version=self.plan.target_version,
            run=run,
            gate=gate.id,
            message=f"waiting at gate {gate.id}: upgrader promote {run}",
        )
        degraded: list[str] = []
        next_round = [0.0]
        since = gates.now()
        beat = _Heartbeat(self.progress, f"gate {gate.id}")

        def healthy() -> str | None:
            if not watch or time.monotonic() < next_round[0]:
                return None
            next_round[0] = time.monotonic() + self.spec.canary.bake_interval
            for host in watch:
                problem = self.actions.check_round(host)
                if problem is not None:
                    degraded.append(host)
                    return f"{host}: {problem}"
            return None

        result = gates.wait(
            self.journal.directory,
            gate.id,
            timeout=gate.timeout,
            healthy=healthy,
            sleep=self.sleep,
            stopped=lambda: self.halted is not None,
            since=since,
            tick=beat,
        )
        decision = result.decision.to_dict() if result.decision else None
        self.journal.record(
            Event.GATE_END,
            gate=gate.id,
            outcome=str(result.outcome),
            waited=round(result.waited, 1),
            decision=decision,
            detail=result.detail,
        )
        if result.outcome is gates.GateOutcome.PROMOTED:
            who = result.decision.operator if result.decision else "?"
            ahead = " (approved ahead, before the run reached it)" if result.decision and result.decision.ahead else ""
            self.progress.event("gate", f"gate {gate.id} promoted by {who}{ahead}")
            self.notify(
                "promoted",
                component=self.plan.component,
                version=self.plan.target_version,
                run=run,
                gate=gate.id,
                operator=who,
                message=result.decision.reason if result.decision else "",
            )
            return True
        if result.outcome is gates.GateOutcome.STOPPED:
            if self._aborted():
                self._roll_back_aborted(list(gate.watch))
            return False
        if result.outcome is gates.GateOutcome.ABORTED:
            self._aborted()
            self._roll_back_aborted(list(gate.watch))  # not promoted: the canaries it judged are the wave
            return False
        if result.outcome is gates.GateOutcome.DEGRADED:
            host = degraded[0]
            self.actions.fail(
                host, HostState.FAILED, f"canary degraded while waiting at gate {gate.id}: {result.detail}"
            )
            canary_phase = self.plan.phases[self.hosts[host].plan.phase]
            self._on_failure(canary_phase, [host])
            return False
        self.halted = f"no decision at gate {gate.id} within {gate.timeout:g}s ({gate.on_timeout})"
        self.journal.record(Event.HALT, reason=self.halted)
        self.progress.event("halt", self.halted)
        if gate.on_timeout == "hold":
            self.held = True
            self.journal.record(Event.HOLD, hosts=[h for h in self.hosts if self.hosts[h].touched])
        else:
            self.rollback([h for h, r in self.hosts.items() if r.touched or r.state in ON_TARGET])
        return False

    def _estimate(self, phase: Phase) -> float:
        """Seconds the phase should take: past runs' median per host, else a quarter of the ceiling."""
        hops = max(len(self.hosts[h].plan.path) for h in phase.hosts)
        per_host = self.host_seconds or programs.hop_timeout(self.spec) / 4
        waves = -(-len(phase.hosts) // self.spec.rollout.max_in_flight_per_datacenter)
        return per_host * hops * waves + phase.bake

    def _upgrade(self, host: str) -> bool:
        ran = self.actions.upgrade(host)
        if ran is Ran.HANDED_OVER:
            self.halted = f"lock on {host} was taken over: {self.hosts[host].detail}"
            self.journal.record(Event.HALT, reason=self.halted)
        return ran is Ran.OK

    def _bake(self, host: str) -> None:
        """The canary's bake, driven from here: one round of its checks every bake_interval.

        The controller, not the agent, keeps the time, so a stop or an abort ends the bake within TICK
        (a bake inside one agent call could only end with that call, minutes later)."""
        hp = self.hosts[host].plan
        bake, interval = self.spec.canary.bake, max(self.spec.canary.bake_interval, TICK)
        self.actions.set(host, HostState.BAKING, f"{bake:g}s")
        self.journal.record(
            Event.BAKE_BEGIN,
            host=host,
            seconds=bake,
            steps=[s.id for s in self.actions.steps(host, "bake")],
            rounds_from="controller",
        )
        started, rounds, waited = time.monotonic(), 0, 0.0
        beat = _Heartbeat(self.progress, "bake", host)
        while True:
            problem = self.actions.check_round(host, lock=True)
            rounds += 1
            if problem is not None and problem.startswith(HANDED_OVER):
                self.halted = f"lock on {host} was taken over: {problem.removeprefix(HANDED_OVER)}"
                self.journal.record(
                    Event.BAKE_END, host=host, ok=False, rounds=rounds, error=self.halted, handed_over=True
                )
                self.actions.set(host, HostState.HANDED_OVER, problem.removeprefix(HANDED_OVER))
                self.journal.record(Event.HALT, reason=self.halted)
                return
            if problem is not None:
                self.journal.record(
                    Event.BAKE_END,
                    host=host,
                    ok=False,
                    rounds=rounds,
                    error=problem,
                    ops=self.actions.failed_round.pop(host, []),
                )
                state = HostState.UNREACHABLE if problem.startswith("unreachable") else HostState.FAILED
                self.actions.fail(host, state, f"canary bake: {problem}" if state == HostState.FAILED else problem)
                return
            left = bake - max(waited, time.monotonic() - started)
            if left <= 0:
                break
            step = min(interval, left)
            beat(left)
            self.actions.set(host, HostState.BAKING, f"{left:.0f}s of {bake:g}s left")
            if not self.wait(step, "bake", host):
                cut = f"bake cut short after {time.monotonic() - started:.1f}s of {bake:g}s: " + (
                    "aborted" if self.abort is not None else self.halted or "stopped"
                )
                self.journal.record(Event.BAKE_END, host=host, ok=False, cut=True, rounds=rounds, error=cut)
                self.actions.set(host, HostState.VERIFIED, f"on {hp.path[-1]}, {cut}")
                return
            waited += step
        self.journal.record(Event.BAKE_END, host=host, ok=True, rounds=rounds)
        if not self.actions.testinfra(host, "at the end of the bake"):
            return
        self.actions.set(host, HostState.DONE, f"on {hp.path[-1]}, baked {bake:g}s")

    # ------------------------------------------------------------ rollback
    def _on_failure(self, phase: Phase, failed: list[str]) -> None:
        policy = self.spec.rollback.on_failure
        if policy == "hold":
            self.held = True
            self.halted = "held for a human"
            for host in failed:
                self.actions.set(host, HostState.HELD, self.hosts[host].detail)
                self.down.stuck(host)
            self.journal.record(Event.HOLD, hosts=failed)
            return
        targets = rollback_targets(policy, self.hosts, phase.hosts, failed)
        spent = self._budget_spent()
        if spent:  # no new host starts from here on, whatever the policy
            self.journal.record(Event.HALT, reason=spent)
            self.progress.event("halt", spent)
        if policy != "host" or spent:
            self.halted = f"{len(failed)} host(s) failed in phase {phase.index + 1}; rollback policy '{policy}'" + (
                f"; {spent}" if spent else ""
            )
        self.rollback(targets)

    def _may_go_down(self, host: str) -> bool:
        """Take the host's redundancy-group slots before its live program; False: it must not start."""
        reason = self.down.take(host, in_phase=True, give_up=lambda: self.halted is not None)
        if reason is not None:
            self.actions.set(host, self.hosts[host].state, f"not started: {reason}")
            self.journal.record(Event.HOST_WITHHELD, host=host, reason=reason)
        return reason is None

    def _settle(self, host: str) -> None:
        """After its program: a verified (or never stopped) host is up again; a failed one stays down until
        its rollback is verified."""
        run = self.hosts[host]
        if run.state in (HostState.FAILED, HostState.UNREACHABLE) and run.touched:
            self.down.failed(host)  # a member waiting in this phase for its slot must not wait for ever
            return
        self.down.back(host)

    def _in_group_slot(self, back: Callable[[str], remote.AgentResult]) -> Callable[[str], remote.AgentResult | str]:
        """``back`` (one host's rollback) within its groups' limits; a str says why it was not run."""

        def guarded(host: str) -> remote.AgentResult | str:
            reason = self.down.take(host, force=self.hosts[host].state not in UPGRADED)
            if reason is not None:
                return reason
            try:
                res = back(host)
            except Exception:
                self.down.stuck(host)  # unknown: counted down for the rest of the run
                raise
            handed_over = res.failed is not None and res.failed.op == "lock"
            (self.down.back if res.ok or handed_over else self.down.stuck)(host)
            return res

        return guarded

    def _budget_spent(self) -> str | None:
        """Why no new host may start: the run's or a datacenter's failure budget is spent (budgets.py)."""
        return self.budgets.spent(self.failures, self.failures_in)

    def rollback(self, hosts: list[str], *, failing: bool = True) -> None:
        """Put ``hosts`` back where they began.  ``failing``: a failure or abort, not a stop's put-back
        (resume reads the difference).  After a second signal no rollback starts: resume does it."""
        if not hosts:
            return
        if self.stop_now:
            self.journal.record(
                Event.ROLLBACK_WITHHELD,
                hosts=hosts,
                reason="stopped at once (second signal): `upgrader resume` puts them back",
            )
            return
        self.progress.event("rollback", f"rolling back {', '.join(hosts)}")
        self.journal.record(Event.ROLLBACK_BEGIN, hosts=hosts, failing=failing)

        results = self.pool.each(self.down.down_first(hosts), self._in_group_slot(self.actions.roll_back))
        for r in results:
            host, res = r.host, r.value
            if isinstance(res, str):  # its redundancy group has members down for good: it stays up, verified
                self.actions.set(host, self.hosts[host].state, f"{self.hosts[host].detail}; not rolled back: {res}")
                self.journal.record(Event.ROLLBACK_WITHHELD, host=host, reason=res)
            else:
                self.actions.rolled_back(host, res, r.error)

    def summary_rows(self) -> list[tuple[str, str, str, str]]:
        return [(h.name, h.plan.datacenter, h.state, h.detail) for h in self.hosts.values()]


class _Heartbeat:
    """A "… s left" line for a wait, at most every HEARTBEAT seconds (plain and JSON output)."""

    def __init__(self, progress: Progress, what: str, host: str | None = None) -> None:
        self.progress, self.what, self.host = progress, what, host
        self.last = time.monotonic()

    def __call__(self, left: float) -> None:
        now = time.monotonic()
        if now - self.last >= HEARTBEAT:
            self.last = now
            self.progress.event("wait", f"{self.what}: {left:.0f}s left", host=self.host, left=round(left, 1))


@contextmanager
def stop_on_signals(engine: Apply, say: Callable[[str], None] | None = None) -> Iterator[None]:
    """SIGTERM/SIGINT, first: end the waits (bakes, pauses, gates) within TICK, start no new host, let the
    programs in flight finish, put back canaries whose bake was cut; the run ends resumable or with every
    host back.  Second: as well, start no rollback; stop once the programs in flight (never cut between a
    service's stop and start: each is one agent call) have ended.  The journal's halt says which."""

    def tell(text: str) -> None:
        if say is not None:
            say(text)
            return
        with contextlib.suppress(OSError):
            os.write(2, (text + "\n").encode())  # not Progress: its lock may be held by the code interrupted

    def halt(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if engine.signalled is None:
            engine.signalled = name
            engine.halted = engine.halted or f"stopped by {name}: no new hosts started"
            tell(
                f"{name}: stopping — waits end now, hosts in flight finish their step, a canary whose bake "
                "was cut goes back; press Ctrl-C again to stop at the next safe point without rolling back"
            )
        elif not engine.stop_now:
            engine.stop_now = True
            tell(
                f"{name} again: stopping at the next safe point (after the host steps in flight); no rollback "
                "starts — `upgrader resume` finishes the job"
            )
        else:
            tell(f"{name}: already stopping at the next safe point")

    previous = {sig: signal.signal(sig, halt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# Where a host may end and still be on a verified release: the target, or where it began.
_ON_START = frozenset({HostState.PENDING, HostState.STAGED, HostState.UNTOUCHED, HostState.ROLLED_BACK})


def verdict(
    hosts: dict[str, HostRun],
    *,
    held: bool,
    failures: int,
    aborted: bool,
    halted: str | None,
    target: str,
    resumable: bool = False,
) -> tuple[ExitCode, RunStatus, str]:
    """How a run ended, from its hosts' end states: the one rule for the local engine and the Temporal
    workflow, and the README's exit-code table.

    0  every host on the target, verified.
    3  stopped by a failure or an abort: every host it changed and did not finish is back on its
       starting release, verified (policy 'host': hosts that passed stay on the target, verified).
    4  a human must act: a host is on no verified release (rollback failed, unreachable, held, or its
       put-back was left to resume by a second signal).
    5  halted part-way, nothing to fix: every host verified, on the target or its starting release;
       resumable (`upgrader resume RUN`), or an `abort --keep` that left hosts on the target.
    """
    if held:
        return ExitCode.ROLLBACK_FAILED, RunStatus.HELD, "failure held for a human (rollback: hold)"
    bad = [
        h.name
        for h in hosts.values()
        if h.state in (HostState.ROLLBACK_FAILED, HostState.UNREACHABLE)
        or (h.state == HostState.FAILED and h.touched)
        or h.state not in (_ON_START | ON_TARGET | {HostState.FAILED, HostState.HANDED_OVER})
    ]
    if bad:
        return (
            ExitCode.ROLLBACK_FAILED,
            RunStatus.ROLLBACK_FAILED,
            f"{', '.join(bad)} not back on a verified version — act now",
        )
    on_target = [h.name for h in hosts.values() if h.state in ON_TARGET]
    if len(on_target) == len(hosts):
        return ExitCode.OK, RunStatus.SUCCEEDED, f"{len(hosts)} host(s) on {target} and verified"
    still = f"; on {target}, verified: {', '.join(on_target)}" if on_target else ""
    if failures:
        return (
            ExitCode.FAILED_ROLLED_BACK,
            RunStatus.FAILED_ROLLED_BACK,
            f"{failures} host(s) failed; every failed host is back on its starting release, verified" + still,
        )
    if aborted:
        message = halted or "aborted"
        if on_target:  # abort --keep
            return ExitCode.HALTED, RunStatus.ABORTED, message + f"; kept{still}; the rest on their starting release"
        return (
            ExitCode.FAILED_ROLLED_BACK,
            RunStatus.ABORTED,
            message + ("; every host the run changed is back on its starting release, verified"),
        )
    if halted and (resumable or on_target):
        return ExitCode.HALTED, RunStatus.HALTED, halted + (still or "; no host left on the target")
    if halted:
        return ExitCode.FAILED_ROLLED_BACK, RunStatus.HALTED, halted + "; no host left on the target"
    behind = [h.name for h in hosts.values() if h.state not in ON_TARGET]  # never started: not a success
    return ExitCode.HALTED, RunStatus.HALTED, f"not started: {', '.join(behind)}{still}"


def rollback_targets(policy: str, hosts: dict[str, HostRun], phase: list[str], failed: list[str]) -> list[str]:
    """Who a failure in ``phase`` puts back under ``policy`` (host, wave or run; hold puts back no one).

    host: the failed hosts that changed; wave: every host of the phase that changed or is on the
    target; run: every host of the run on the target, a baking canary included.  Shared by the local
    engine and the Temporal workflow, so the two cannot drift.
    """
    if policy == "hold":
        return []
    if policy == "host":
        return [h for h in failed if hosts[h].touched]
    if policy == "wave":
        return [h for h in phase if hosts[h].touched or hosts[h].state in ON_TARGET]
    return [h for h, r in hosts.items() if r.touched or r.state in UPGRADED]


def _by_turns(hosts: list[str], key: Callable[[str], str]) -> list[str]:
    """``hosts`` reordered one per group in turn (each group's own order kept): a, b, a, b, a."""
    groups: dict[str, list[str]] = {}
    for h in hosts:
        groups.setdefault(key(h), []).append(h)
    return [h for turn in zip_longest(*groups.values()) for h in turn if h is not None]
