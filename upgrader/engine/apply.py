"""The local driver: a run of the plan on this machine, with threads.

The invariant: every host ends on a known version — the one it started on or the target — with
its service verified, or is named in the summary as needing a human.  Each host program is journaled
before it runs and after it ends; the agent journals each operation on the host itself.

Everything the run decides is the policy's (engine/policy.py); what happens on a host is
HostActions' (engine/host_actions.py).  This module only carries out the policy's actions: host
calls in a thread pool, waits with ``sleep`` in steps of TICK (so a signal or an abort ends them),
gates by polling the run's decision files, aborts by reading them, SIGINT/SIGTERM (stop_on_signals).
The Temporal driver (temporal/workflow.py) carries out the same actions with activities and timers.
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
from pathlib import Path
from typing import Any, TypeVar

from upgrader.engine import gates
from upgrader.engine import policy_messages as m
from upgrader.engine.host_actions import HostActions
from upgrader.engine.host_actions import HostRun as HostRun
from upgrader.engine.policy import RunPolicy
from upgrader.engine.policy_state import TICK, Program, step
from upgrader.engine.policy_state import Recovery as Recovery
from upgrader.engine.policy_state import by_turns as _by_turns
from upgrader.engine.pool import Pool
from upgrader.engine.progress import Listener, replay
from upgrader.engine.verdict import Outcome as Outcome
from upgrader.engine.verdict import rollback_targets as rollback_targets
from upgrader.engine.verdict import verdict as verdict
from upgrader.journal import Journal
from upgrader.models.plan import Plan
from upgrader.vocabulary import Event, HostState

HEARTBEAT = 10.0  # seconds between "… s left" lines while a wait goes on
POLL = 0.5  # seconds a program waiting for a slot sleeps before it looks again (it is woken sooner)
T = TypeVar("T")

__all__ = ["TICK", "_by_turns"]


class _Clock:
    """A program's time: the monotonic clock, or the waits it asked for when they passed faster
    (a test's instant ``sleep`` makes an instant bake of the same number of rounds)."""

    def __init__(self) -> None:
        self.base = time.monotonic()
        self.slept = 0.0

    def now(self) -> float:
        return self.base + max(time.monotonic() - self.base, self.slept)


class Apply:
    def __init__(
        self,
        plan: Plan,
        pool: Pool,
        journal: Journal,
        progress: Listener,
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
            plan, pool, journal, progress, artifacts=artifacts, operator=operator, break_lock=break_lock, python=python
        )
        self.hosts = self.actions.hosts
        self.policy = RunPolicy(
            plan, self.hosts, run_id=journal.run_id, host_seconds=host_seconds, admission=admit is not None
        )
        self.admit = admit
        self.notify = notify or (lambda *a, **k: None)
        self.sleep = sleep
        self._moved = threading.Condition()  # one program steps at a time; waiters for a slot wake on a step
        self._beats: dict[tuple[str, str | None], _Heartbeat] = {}
        self._since: str | None = None  # when the run began to wait at its gate (decisions.counts_at)

    # The run's state is the policy's; these read (and, for a stop, write) it.
    @property
    def halted(self) -> str | None:
        return self.policy.halted

    @halted.setter
    def halted(self, value: str | None) -> None:
        self.policy.halted = value

    @property
    def signalled(self) -> str | None:
        return self.policy.signalled

    @property
    def stop_now(self) -> bool:
        return self.policy.stop_now

    @property
    def failures(self) -> int:
        return self.policy.failures

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
        self.policy.locked = set(self.actions.locked)
        try:
            outcome = self.drive(self.policy.run_program(recovery))
        finally:
            stuck = self.release_locks()
        outcome, last = self.policy.closing(outcome, stuck)
        for action in last:
            if isinstance(action, m.Record) and action.event == Event.RUN_END:
                fields = dict(action.fields)
                fields = {**{k: fields.pop(k) for k in ("status", "exit_code", "message")}, **fields}
                action = m.Record(action.event, {**fields, "handshake_retries": self.pool.handshake_retries})
            self.carry_out(action, _Clock())
        return outcome

    def lock_hosts(self, recovery: Recovery | None = None) -> None:
        """Take every host's lock and check its facts still match the plan; refuse as a whole."""
        self.actions.lock(recovery.expect if recovery is not None else None)

    def release_locks(self) -> list[str]:
        """Release this run's host locks; the hosts that kept them because they did not answer."""
        return self.actions.release()

    def drive(self, program: Program[T]) -> T:
        """Run one of the policy's programs to its end, carrying out each action it yields."""
        clock = _Clock()
        answer: m.Answer | None = None
        while True:
            with self._moved:
                action, result = step(program, answer)
                self._moved.notify_all()
            if action is None:
                return result  # type: ignore[return-value]
            answer = self.carry_out(action, clock)

    def carry_out(self, action: m.Action, clock: _Clock) -> m.Answer:
        """What the policy asked, done here; the event that answers it."""
        actions = self.actions
        if isinstance(action, m.Record):
            self.journal.record(action.event, **action.fields)
        elif isinstance(action, m.Notify):
            plan = self.plan
            self.notify(
                action.event,
                component=plan.component,
                version=plan.target_version,
                run=self.journal.run_id,
                **action.fields,
            )
        elif isinstance(action, m.Say):
            replay(self.progress, action.what, action.text, action.host)  # the kind's Listener method
        elif isinstance(action, m.SetState):
            actions.set(action.host, action.state, action.detail)
        elif isinstance(action, m.Fail):
            actions.fail(action.host, action.state, action.detail)
        elif isinstance(action, m.Stage):
            return m.Staged(actions.stage(action.hosts))
        elif isinstance(action, m.Unstage):
            actions.unstage(action.hosts, action.failed)
        elif isinstance(action, m.RunHosts):
            # At most --parallel threads, not one per host: a 10,000-host wave must not start 10,000.
            with ThreadPoolExecutor(max_workers=max(1, min(len(action.hosts), self.pool.parallel))) as ex:
                list(ex.map(lambda h: self.drive(self.policy.host_program(h)), action.hosts))
        elif isinstance(action, m.RunHost):
            return m.HostFinished(action.host, actions.upgrade(action.host), clock.now())
        elif isinstance(action, m.CheckRound):
            problem = actions.check_round(action.host, lock=action.lock)
            ops = actions.failed_round.pop(action.host, []) if problem is not None else []
            return m.Checked(action.host, problem, ops, clock.now())
        elif isinstance(action, m.Testinfra):
            return m.Tested(action.host, actions.testinfra(action.host, action.when), clock.now())
        elif isinstance(action, m.RollBack):
            self.pool.each(action.hosts, lambda h: self.drive(self.policy.rollback_program(h)))
        elif isinstance(action, m.RollBackHost):
            try:
                res = actions.roll_back(action.host)
            except Exception as exc:  # nobody knows where it is: a human must look
                return m.RolledBack(action.host, actions.rolled_back(action.host, None, exc), raised=True)
            return m.RolledBack(action.host, actions.rolled_back(action.host, res, None))
        elif isinstance(action, m.WaitUntil):
            return self.wait(action.at - clock.now(), action.what, action.host, clock)
        elif isinstance(action, m.AwaitChange):
            with self._moved:
                self._moved.wait(POLL)
        elif isinstance(action, m.AskAbort):
            found = gates.aborted(self.journal.directory) if self.policy.abort is None else None
            return m.AbortAsked(found, clock.now())
        elif isinstance(action, m.OpenGate):
            self._since = gates.now() if action.gate is not None else None
        elif isinstance(action, m.AwaitDecision):
            return self.await_decision(action, clock)
        elif isinstance(action, m.Admit):
            return m.Admitted(self.admit(action.estimate) if self.admit is not None else None, clock.now())
        elif isinstance(action, m.Clock):
            pass
        return m.Done(clock.now())

    # ------------------------------------------------------------ waits (bakes, pauses, gates)
    def _stop(self) -> tuple[bool, gates.Decision | None]:
        """Should a wait end now (a stop, an abort); an abort's decision newly found in the run's files."""
        found = gates.aborted(self.journal.directory) if self.policy.abort is None else None
        return self.policy.stopping() or found is not None, found

    def wait(self, seconds: float, what: str, host: str | None, clock: _Clock) -> m.Woke:
        """Wait ``seconds`` in steps of at most TICK, with a heartbeat; cut short by a stop or an abort."""
        left = seconds
        beat = self._beat(what, host)
        while left > 0:
            cut, found = self._stop()
            if cut:
                return m.Woke(clock.now(), True, found)
            beat(left)
            pause = min(TICK, left)
            self.sleep(pause)
            clock.slept += pause
            left -= pause
        cut, found = self._stop()
        return m.Woke(clock.now(), cut, found)

    def await_decision(self, action: m.AwaitDecision, clock: _Clock) -> m.GateDecided:
        """Poll the run's decision files (gates.wait) until one ends the wait at the gate, the run stops,
        or ``until`` comes."""
        beat = self._beat(f"gate {action.gate}")
        began = clock.now()

        def sleep(seconds: float) -> None:
            self.sleep(seconds)
            clock.slept += seconds

        result = gates.wait(
            self.journal.directory,
            action.gate,
            timeout=max(0.0, action.until - began),
            healthy=lambda: None,  # the policy runs the check rounds (CheckRound) between waits
            clock=clock.now,
            sleep=sleep,
            stopped=lambda: self.policy.halted is not None,
            since=self._since,
            tick=lambda left: beat(max(0.0, action.deadline - action.until + left)),
        )
        return m.GateDecided(result.decision, clock.now(), stopped=result.outcome is gates.GateOutcome.STOPPED)

    def _beat(self, what: str, host: str | None = None) -> _Heartbeat:
        """The heartbeat of a wait that goes on across the policy's steps (a bake's rounds, a gate's)."""
        return self._beats.setdefault((what, host), _Heartbeat(self.progress, what, host))

    def summary_rows(self) -> list[tuple[str, str, str, str]]:
        return [(h.name, h.plan.datacenter, h.state, h.detail) for h in self.hosts.values()]


class _Heartbeat:
    """A "… s left" line for a wait, at most every HEARTBEAT seconds (plain and JSON output)."""

    def __init__(self, progress: Listener, what: str, host: str | None = None) -> None:
        self.progress, self.what, self.host = progress, what, host
        self.last = time.monotonic()

    def __call__(self, left: float) -> None:
        now = time.monotonic()
        if now - self.last >= HEARTBEAT:
            self.last = now
            self.progress.wait(f"{self.what}: {left:.0f}s left", host=self.host, left=round(left, 1))


@contextmanager
def stop_on_signals(engine: Apply, say: Callable[[str], None] | None = None) -> Iterator[None]:
    """SIGTERM/SIGINT, first: end the waits (bakes, pauses, gates) within TICK, start no new host, let the
    programs in flight finish, put back canaries whose bake was cut; the run ends resumable or with every
    host back.  Second: as well, start no rollback; stop once the programs in flight (never cut between a
    service's stop and start: each is one agent call) have ended.  The journal's halt says which
    (the policy decides: RunPolicy.interrupt)."""

    def tell(text: str) -> None:
        if say is not None:
            say(text)
            return
        with contextlib.suppress(OSError):
            os.write(2, (text + "\n").encode())  # not Progress: its lock may be held by the code interrupted

    def halt(signum: int, _frame: object) -> None:
        tell(engine.policy.interrupt(signal.Signals(signum).name))

    previous = {sig: signal.signal(sig, halt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
