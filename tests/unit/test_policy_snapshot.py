"""The run policy's state handed over (PolicyState.snapshot / restore), as the Temporal tree does it.

The Temporal driver runs a phase's hosts in a child workflow with a policy built from a snapshot of the
parent's, and a child that continues-as-new hands its state over again (temporal/hosts_workflow.py).
So a run split at any host into policies that hand over by snapshot must decide exactly what one
policy decides: the same actions in the same order, the same verdict, the same end states.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.fleets import inventory, plan, playbook
from tests.unit.test_policy import Table, Task, fleets
from upgrader.engine import policy_messages as m
from upgrader.engine.gates import Decision, DecisionKind
from upgrader.engine.host_actions import HostRun
from upgrader.engine.policy import RunPolicy
from upgrader.models.plan import Plan
from upgrader.vocabulary import HostState


def fresh(p: Plan) -> RunPolicy:
    return RunPolicy(p, {h.host: HostRun(h) for h in p.hosts}, run_id="r1", admission=False)


@dataclass(frozen=True)
class Spawn:
    """The test's own action: run these hosts' programs (or rollbacks) on ``policy``, side by side."""

    policy: RunPolicy = field(compare=False)
    rollback: bool
    hosts: list[str]


@dataclass
class Tree(Table):
    """``Table`` whose RunHosts / RollBack run in two halves, cut after ``cut`` hosts (modulo their number),
    the second half starting once the first has ended (as a child drains before its continue-as-new).
    ``split``: each half on a policy of its own, built from the snapshot of the one before (the parent's
    for the first, the first half's for the second) and the parent restored from the last; otherwise both
    halves on the run's one policy: the same schedule, no hand-over."""

    cut: int = 0
    split: bool = False
    owner: dict[int, RunPolicy] = field(default_factory=dict)
    handovers: int = 0

    def answer(self, action: m.Action, task: Task, tasks: list[Task], tick: int) -> m.Answer | None:
        if isinstance(action, m.RunHosts | m.RollBack):
            halves = Task(self.halves(action), parent=task, ready=tick + 1)
            tasks.append(halves)
            task.children = 1
            return None
        if isinstance(action, Spawn):
            for host in action.hosts:
                program = action.policy.rollback_program(host) if action.rollback else action.policy.host_program(host)
                child = Task(program, parent=task, ready=tick + 1)
                self.owner[id(child)] = action.policy
                tasks.append(child)
            task.children = len(action.hosts)
            return None
        mine = self.owner.get(id(task), self.policy)
        if isinstance(action, m.SetState | m.Fail):
            mine.hosts[action.host].state = action.state
            return m.Done(float(tick))
        if isinstance(action, m.WaitUntil):
            return m.Woke(action.at, mine.stopping(), None)
        return super().answer(action, task, tasks, tick)

    def land(self, task: Task) -> None:
        keep = self.hosts
        self.hosts = self.owner.get(id(task), self.policy).hosts
        try:
            super().land(task)
        finally:
            self.hosts = keep

    def halves(self, action: m.RunHosts | m.RollBack) -> Generator[Any, m.Answer, None]:
        hosts = list(action.hosts)
        k = self.cut % (len(hosts) + 1)
        rollback = isinstance(action, m.RollBack)
        current = self.policy
        if self.split:
            current = self.handed(self.policy, hosts)
        first, second = hosts[:k], hosts[k:]
        if first:
            yield Spawn(current, rollback, first)
        if second:
            if self.split and first:  # the first half drained: continue-as-new with the rest
                current = self.handed(current, hosts)
            yield Spawn(current, rollback, second)
        if self.split:
            self.policy.restore(current.snapshot(hosts))
            self.handovers += 1

    def handed(self, source: RunPolicy, hosts: list[str]) -> RunPolicy:
        data = json.loads(json.dumps(source.snapshot(hosts)))  # as a Temporal payload carries it
        target = fresh(self.plan)
        target.restore(data)
        assert target.snapshot(hosts) == source.snapshot(hosts)
        self.handovers += 1
        return target


def ends(table: Table) -> dict[str, tuple[str, bool]]:
    return {h: (str(r.state), r.touched) for h, r in table.hosts.items()}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets(), st.integers(0, 12), st.booleans())
def test_a_run_split_at_any_host_decides_as_one_policy(case: tuple[Plan, set[str]], cut: int, abort: bool) -> None:
    p, fails = case
    stop = Decision(DecisionKind.ABORT, None, "ann", "INC-1", "2026-12-05T00:00:00Z") if abort else None
    one = Tree(p, set(fails), abort=stop, cut=cut)
    _, outcome = one.run()
    two = Tree(p, set(fails), abort=stop, cut=cut, split=True)
    policy, outcome_two = two.run()
    assert two.trace == one.trace
    assert (outcome_two.exit_code, outcome_two.status, outcome_two.message) == (
        outcome.exit_code,
        outcome.status,
        outcome.message,
    )
    assert ends(two) == ends(one)
    assert policy.snapshot() == one.policy.snapshot()
    assert two.handovers >= 2 * sum(isinstance(a, m.RunHosts | m.RollBack) for a in one.trace)


STATES = st.sampled_from(list(HostState))
TEXT = st.text(max_size=20)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_snapshot_restore_snapshot_is_the_identity(data: st.DataObject) -> None:
    """Any state a policy can be in (drawn field by field, groups included) survives JSON and a restore."""
    names = {"ny": ["a1", "a2", "a3"], "ch": ["b1", "b2"]}
    hosts = [h for hs in names.values() for h in hs]
    groups = {"pair": {"hosts": ["a2", "b1"], "max_unavailable": 1}, "trio": {"hosts": hosts[:3], "max_unavailable": 2}}
    p = plan(playbook(canary={"hosts": 1}), inventory(names, groups))
    source = fresh(p)
    source.failures = data.draw(st.integers(0, 9))
    source.failures_in = data.draw(st.dictionaries(st.sampled_from(list(names)), st.integers(0, 9)))
    source.in_flight = data.draw(st.dictionaries(st.sampled_from(list(names)), st.integers(0, 3)))
    source.halted = data.draw(st.none() | TEXT)
    source.resumable, source.held, source.stop_now = (data.draw(st.booleans()) for _ in range(3))
    source.signalled = data.draw(st.none() | st.sampled_from(["SIGINT", "SIGTERM"]))
    if data.draw(st.booleans()):
        source.abort = Decision(
            DecisionKind.ABORT, None, data.draw(TEXT), data.draw(TEXT), "t", keep=data.draw(st.booleans())
        )
    source._abort_handled = data.draw(st.booleans())
    source.recovered = set(data.draw(st.lists(st.sampled_from(hosts), unique=True)))
    source.phase = data.draw(st.none() | st.sampled_from(p.phases))
    for host in data.draw(st.lists(st.sampled_from(hosts), unique=True)):
        verb = data.draw(st.sampled_from(["take", "failed", "stuck"]))
        if verb == "take":
            source.down.try_take(host, force=True)
        else:
            source.down.try_take(host, force=True)
            getattr(source.down, verb)(host)
    for host in hosts:
        run = source.hosts[host]
        run.state, run.detail, run.touched = data.draw(STATES), data.draw(TEXT), data.draw(st.booleans())
        run.failure, run.unhealthy = data.draw(TEXT), data.draw(st.booleans())
    share = data.draw(st.none() | st.lists(st.sampled_from(hosts), unique=True))
    snap = source.snapshot(share)
    target = fresh(p)
    target.restore(json.loads(json.dumps(snap)))
    assert target.snapshot(share) == snap
    assert all(target.down.is_down(h) == source.down.is_down(h) for h in hosts)
    assert target.abort == source.abort


def test_a_restored_policy_keeps_its_groups_full() -> None:
    """The redundancy groups' state is handed over: a member down in the parent keeps its slot in the child."""
    p = plan(playbook(), inventory({"ny": ["a1", "a2"]}, {"pair": {"hosts": ["a1", "a2"], "max_unavailable": 1}}))
    parent = fresh(p)
    assert parent.down.try_take("a1") is True
    child = fresh(p)
    child.restore(parent.snapshot(["a2"]))
    assert child.down.try_take("a2") is False  # a1 still holds the pair's one slot
    before: dict[str, Any] = child.snapshot()
    assert before["groups"]["down"] == {"pair": ["a1"]}
