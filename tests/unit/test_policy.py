"""The run policy on its own (engine/policy.py): pure, so it is driven here by a table, not by hosts.

``Table`` is a third driver, in the test: it answers each action the policy yields from a table of
host outcomes, runs the programs side by side on a scheduler of ticks (a host's program and a
rollback take a few ticks, so programs overlap as they do on threads or activities), and keeps the
trace of actions.  The properties: redundancy groups are never exceeded by live programs (upgrades
and rollbacks alike, across datacenters), the same events give the same actions, and the verdict
follows the hosts' outcomes.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.fleets import inventory, plan, playbook
from upgrader.engine import policy_messages as m
from upgrader.engine.gates import Decision, DecisionKind
from upgrader.engine.host_actions import Back, HostRun, Ran
from upgrader.engine.policy import RunPolicy
from upgrader.engine.policy_state import step
from upgrader.engine.verdict import Outcome
from upgrader.models.plan import Plan
from upgrader.vocabulary import Event, HostState

LIVE_TICKS = 3  # a host's program or rollback is in flight this many ticks


@dataclass
class Task:
    program: Generator[m.Action, m.Answer, Any]
    answer: m.Answer | None = None
    ready: int = 0  # the tick it may step again
    parent: Task | None = None
    children: int = 0
    parked: int = -1  # waits for another program to move (AwaitChange): the moves seen when it parked
    live: str | None = None  # the host whose program or rollback it has in flight
    result: Any = None


@dataclass
class Table:
    """Answers the policy from ``fails`` (hosts whose program fails) and ``decisions`` (at each gate)."""

    plan: Plan
    fails: set[str] = field(default_factory=set)
    abort: Decision | None = None
    trace: list[m.Action] = field(default_factory=list)
    peaks: dict[str, int] = field(default_factory=dict)  # group -> most members live at once

    def run(self) -> tuple[RunPolicy, Outcome]:
        hosts = {h.host: HostRun(h) for h in self.plan.hosts}
        self.policy = RunPolicy(self.plan, hosts, run_id="r1", admission=False)
        self.hosts = hosts
        tasks = [Task(self.policy.run_program())]
        outcome: Outcome | None = None
        tick = moves = 0
        while tasks:
            tick += 1
            for task in list(tasks):
                if task.ready > tick or task.children or task.parked >= moves:
                    continue
                task.parked = -1
                if task.live is not None:
                    self.land(task)
                action, result = step(task.program, task.answer)
                moves += 1
                self.moves = moves
                if action is None:
                    tasks.remove(task)
                    if task.parent is None:
                        outcome = result
                    else:
                        task.parent.children -= 1
                        task.parent.answer = m.Done(float(tick))
                    continue
                self.trace.append(action)
                task.answer = self.answer(action, task, tasks, tick)
            self.measure(tasks)
            assert tick < 100_000, "the policy never ended"
        assert outcome is not None
        return self.policy, outcome

    def answer(self, action: m.Action, task: Task, tasks: list[Task], tick: int) -> m.Answer | None:
        now = float(tick)
        if isinstance(action, m.RunHosts | m.RollBack):
            for host in action.hosts:
                child = self.policy.host_program(host) if isinstance(action, m.RunHosts) else None
                program = child or self.policy.rollback_program(host)
                tasks.append(Task(program, parent=task, ready=tick + 1))
            task.children = len(action.hosts)
            return None
        if isinstance(action, m.AwaitChange):
            task.parked = self.moves
            return m.Done(now)
        if isinstance(action, m.RunHost | m.RollBackHost):
            task.live, task.ready = action.host, tick + LIVE_TICKS
            task.result = action
            return None
        if isinstance(action, m.Stage):
            return m.Staged({}, now)
        if isinstance(action, m.SetState | m.Fail):
            self.hosts[action.host].state = action.state
        if isinstance(action, m.AskAbort):
            return m.AbortAsked(self.abort, now)
        if isinstance(action, m.WaitUntil):
            return m.Woke(action.at, self.policy.stopping(), None)
        if isinstance(action, m.AwaitDecision):
            promote = Decision(DecisionKind.PROMOTE, action.gate, "t", "t", "2026-12-05T00:00:00Z")
            return m.GateDecided(self.abort or promote, now)
        if isinstance(action, m.CheckRound):
            return m.Checked(action.host, None, [], now)
        if isinstance(action, m.Testinfra):
            return m.Tested(action.host, True, now)
        return m.Done(now)

    def land(self, task: Task) -> None:
        """A host's program or rollback ends: its state as HostActions would leave it; the answer."""
        host, action, run = task.live, task.result, None
        assert host is not None
        run = self.hosts[host]
        task.live = None
        if isinstance(action, m.RunHost):
            if host in self.fails:
                run.state, run.touched = HostState.FAILED, True
                task.answer = m.HostFinished(host, Ran.FAILED)
            else:
                run.state, run.touched = (HostState.VERIFIED if run.plan.canary else HostState.DONE), True
                task.answer = m.HostFinished(host, Ran.OK)
        else:
            run.state, run.touched = HostState.ROLLED_BACK, False
            task.answer = m.RolledBack(host, Back.ROLLED_BACK)

    def measure(self, tasks: list[Task]) -> None:
        live = {t.live for t in tasks if t.live is not None}
        for g in self.plan.groups:
            self.peaks[g.name] = max(self.peaks.get(g.name, 0), len(live & set(g.hosts)))


@st.composite
def fleets(draw: st.DrawFn) -> tuple[Plan, set[str]]:
    dcs = {f"dc{d}": [f"h{d}{i}" for i in range(draw(st.integers(1, 4)))] for d in range(draw(st.integers(1, 3)))}
    names = [h for hs in dcs.values() for h in hs]
    members = draw(st.lists(st.sampled_from(names), max_size=min(4, len(names)), unique=True))
    limit = draw(st.integers(1, max(1, len(members) - 1)))
    groups = {"g": {"hosts": members, "max_unavailable": limit}} if len(members) > 1 else None
    pb = playbook(
        rollback={"on_failure": draw(st.sampled_from(["host", "wave", "run", "hold"]))},
        rollout={"batch": draw(st.integers(1, 3)), "max_failures": draw(st.integers(1, 3))},
    )
    fails = set(draw(st.lists(st.sampled_from(names), max_size=2, unique=True)))
    return plan(pb, inventory(dcs, groups)), fails


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets())
def test_groups_are_never_exceeded_and_the_same_events_give_the_same_actions(case: tuple[Plan, set[str]]) -> None:
    p, fails = case
    first = Table(p, fails)
    _, outcome = first.run()
    for g in p.groups:
        assert first.peaks.get(g.name, 0) <= g.max_unavailable, (g, first.peaks)
    again = Table(p, fails)
    _, outcome_again = again.run()
    assert again.trace == first.trace
    assert (outcome.exit_code, outcome.status) == (outcome_again.exit_code, outcome_again.status)
    failed = fails & {h.host for h in p.hosts}
    started = {a.host for a in first.trace if isinstance(a, m.RunHost)}
    assert (int(outcome.exit_code) == 0) == (not (failed & started) and started == {h.host for h in p.hosts})


def test_a_pair_with_one_slot_rolls_back_one_member_at_a_time_across_datacenters() -> None:
    """The issue's measurement: a group of two, max_unavailable 1, policy 'run': the rollbacks go one by one."""
    inv = inventory({"ny": ["a1", "a2"], "ch": ["b1", "b2"]}, {"pair": {"hosts": ["a2", "b1"], "max_unavailable": 1}})
    p = plan(playbook(rollback={"on_failure": "run"}, rollout={"max_failures": 1}), inv)
    table = Table(p, {"b2"})
    _, outcome = table.run()
    backs = [a.host for a in table.trace if isinstance(a, m.RollBackHost)]
    assert {"a2", "b1"} <= set(backs) and table.peaks["pair"] == 1
    assert int(outcome.exit_code) == 3


def test_an_abort_is_recorded_with_at_decision_and_puts_back_what_changed() -> None:
    p = plan(playbook(), inventory({"ny": ["a1", "a2", "a3"]}))
    table = Table(p, abort=Decision(DecisionKind.ABORT, None, "ann", "INC-9", "2026-12-05T01:00:00Z"))
    policy, outcome = table.run()
    record = next(a for a in table.trace if isinstance(a, m.Record) and a.event == Event.ABORT)
    assert record.fields["at_decision"] == "2026-12-05T01:00:00Z" and "at" not in record.fields
    assert policy.abort is not None and int(outcome.exit_code) == 3
    assert not [a for a in table.trace if isinstance(a, m.RunHost)]  # found before the first host started


def test_the_run_begins_by_telling_and_staging() -> None:
    p = plan(playbook(), inventory({"ny": ["a1"]}))
    policy = RunPolicy(p, {h.host: HostRun(h) for h in p.hosts}, run_id="r1")
    program = policy.run_program()
    first, _ = step(program, None)
    second, _ = step(program, m.Done())
    assert first == m.Notify("run-started", {"hosts": 1}) and second == m.Stage(["a1"])
    third, _ = step(program, m.Staged({"a1": "disk full"}))
    assert third == m.Unstage(["a1"], {"a1": "disk full"})
    end, outcome = step(program, m.Done())
    assert end is None and outcome is not None and outcome.status == "stage-failed"
