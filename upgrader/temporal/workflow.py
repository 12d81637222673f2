"""The upgrade as Temporal workflows: the run's workflow (`upgrade`) and its children (`hosts`, hosts_workflow.py).

The run's workflow steps the run policy (engine/policy.py) through the interpreter both share
(interpreter.py): it takes the locks, stages, releases, waits at gates and decides nothing.  Every
RunHosts and RollBack the policy yields is handed to one child workflow at a time (id
``<this workflow's id>/hosts-<n>``), with the policy's snapshot; the child runs the hosts with a
sliding window and continues-as-new when its history grows, and hands the snapshot back.  So each
execution's history stays under Temporal's limits (limits.py) at any fleet size, and the policy has
one authority at a time.  An abort signal is passed on to the child that runs.  Per-datacenter
activities (lock, stage, unstage, release) go in chunks of limits.CHUNK_HOSTS hosts.

Its id is the fleet-wide lock of the upgrade (client.workflow_id).

Changing it under runs in flight: a change to the commands a run has already recorded goes under
``workflow.patched(...)`` (the rule: worker.WORKFLOWS; README: Engines, upgrading the workers), and
tests/unit/test_temporal_replay.py replays the saved histories (tests/histories/) against it in CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from upgrader import defaults
    from upgrader.engine import policy_messages as m
    from upgrader.engine.gates import Decision
    from upgrader.engine.host_actions import HostRun
    from upgrader.engine.policy import RunPolicy
    from upgrader.errors import ExitCode
    from upgrader.temporal import limits, packed, plan_ref, search
    from upgrader.temporal.hosts_workflow import PHASE, ROLLBACK, HostsWorkflow
    from upgrader.temporal.interpreter import Interpreter, cause, checked_problem
    from upgrader.temporal.messages import Done, Hosts, HostsDone, Start
    from upgrader.temporal.settings import CONTROL_QUEUE
    from upgrader.vocabulary import Event, HostState

__all__ = ["UpgradeWorkflow", "checked_problem"]
# A datacenter worker's refusal of the plan itself (activities.HostWork.plan): the run is refused.
PLAN_REFUSALS = ("PlanNotSigned", "InventoryDiffers", plan_ref.REFUSED)


@workflow.defn(name="upgrade")
class UpgradeWorkflow(Interpreter):
    def __init__(self) -> None:
        super().__init__()
        self.locked: dict[str, list[str]] = {}
        self.facts: dict[str, dict[str, Any]] = {}
        self.children = 0  # `hosts` children started: their ids count on
        self.child: str | None = None  # the one running now
        self.continued = 0  # continues-as-new of the children
        self.unstaged: set[str] = set()  # staged and taken away again by their own stage activity
        self.telling: set[asyncio.Future[None]] = set()  # aborts on their way to the child

    # ------------------------------------------------------------ the run
    @workflow.run
    async def run(self, start: Start) -> dict[str, Any]:
        self.start = start
        self.plan = plan = await self.load_plan()
        self.hosts = {h.host: HostRun(h) for h in plan.hosts}
        self.policy = policy = RunPolicy(plan, self.hosts, run_id=start.run_id, host_seconds=start.host_seconds)
        # The execution's own id: `status`/`show`/`watch` ask this execution, not a later run of the same id.
        first = {**start.run_start, "hosts": [h.host for h in plan.hosts]}  # hosts: not in the (small) start
        await self.record(stored_plan=start.plan, **first, execution=workflow.info().run_id)
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
                action = m.Record(action.event, run_end(action.fields))
            await self.carry_out(action)
        self.outcome = result(int(outcome.exit_code), outcome.status, outcome.message, self.hosts.values())
        return self.outcome

    async def refused(self, why: str) -> dict[str, Any]:
        """Locks or the plan refused: nothing was changed anywhere (the run never started)."""
        code, status = int(ExitCode.REFUSED), "refused"
        hosts = {h.name: {"state": h.state, "detail": h.detail, "version": h.version()} for h in self.hosts.values()}
        await self.record(
            Event.RUN_END, **run_end({"status": status, "exit_code": code, "message": why, "hosts": hosts})
        )
        self.outcome = result(code, status, why, self.hosts.values())
        return self.outcome

    # ------------------------------------------------------------ the hosts, in children
    async def carry_out(self, action: m.Action) -> m.Answer:
        if isinstance(action, m.Stage):
            return m.Staged(await self.stage(action.hosts), self.now())
        if isinstance(action, m.Unstage):
            await self.unstage(action.hosts, action.failed)
        elif isinstance(action, m.RunHosts | m.RollBack):
            kind = PHASE if isinstance(action, m.RunHosts) else ROLLBACK
            for share in chunks(action.hosts, limits.CHILD_HOSTS):
                await self.in_child(kind, share)
        else:
            return await super().carry_out(action)
        return m.Done(self.now())

    async def in_child(self, kind: str, hosts: list[str]) -> None:
        """``hosts`` run by a `hosts` child workflow; the policy's state and the hosts' come back."""
        assert self.start is not None and self.policy is not None
        await self.flush()  # the child's records follow ours
        self.children += 1
        work_id = f"{workflow.info().workflow_id}/hosts-{self.children}"
        unheard = self.unheard_abort()
        work = Hosts(
            start=dataclasses.replace(self.start, run_start={}),
            kind=kind,
            hosts=hosts,
            window=self.width(kind, hosts),
            seq=self._seq,
            snapshot=self.policy.snapshot(hosts),
            abort=unheard.to_dict() if unheard else None,
        )
        child = await workflow.start_child_workflow(HostsWorkflow.run, work, id=work_id, task_queue=CONTROL_QUEUE)
        self.child = work_id  # from now on an abort signal is passed on (forward)
        if self.asked_abort is not None and unheard is None and self.policy.abort is None:
            self.forward(self.asked_abort)  # it came while the child was being started
        try:
            done: HostsDone = await child
        finally:
            self.child = None
        self._seq, self.continued = done.seq, self.continued + done.runs - 1
        self.policy.restore(done.snapshot)
        for host in hosts:
            self.touch(host)
        for at, kind, text, host, *_ in done.events:  # `watch` showed those it saw while following the child
            self.event(kind, text, host, source=work_id, at=at)

    def width(self, kind: str, hosts: list[str]) -> int:
        """The child's window: within the pending budget, and a phase no wider than its datacenters'
        max in flight (more programs would only wait for a slot)."""
        assert self.plan is not None
        if kind == ROLLBACK:
            return max(1, min(limits.WINDOW, len(hosts)))
        dcs = {self.hosts[h].plan.datacenter for h in hosts}
        return max(1, min(limits.WINDOW, len(dcs) * self.plan.spec.rollout.max_in_flight_per_datacenter))

    def tree(self) -> dict[str, Any]:
        return {"children": self.children, "continued": self.continued, "child": self.child}

    def forward(self, abort: Decision) -> None:
        if self.child is not None:
            self.telling.add(task := asyncio.ensure_future(self.tell_child(self.child, abort)))
            task.add_done_callback(self.telling.discard)

    async def tell_child(self, child: str, abort: Decision) -> None:
        # A child that has just ended cannot be told: its result comes back, and the parent's own
        # asked_abort reaches the policy at its next question.
        with contextlib.suppress(Exception):
            await workflow.get_external_workflow_handle(child).signal("decide", abort.to_dict())

    def follow(self, event: Event, data: dict[str, Any]) -> None:
        search.follow(event, data)  # the run's phase and status, for `runs --engine temporal`

    # ------------------------------------------------------------ per datacenter, in chunks
    def by_dc(self, hosts: list[str]) -> list[tuple[str, list[str]]]:
        return shares(hosts, lambda h: self.hosts[h].plan.datacenter, limits.CHUNK_HOSTS)

    def facts_of(self, hosts: list[str]) -> dict[str, dict[str, Any]]:
        return {h: self.facts[h] for h in hosts if h in self.facts}

    async def each_dc(self, name: str, hosts: list[str], seconds: float, **extra: Any) -> list[Done]:
        return list(
            await asyncio.gather(
                *(self.call(name, self.work(dc, hs, **extra), seconds) for dc, hs in self.by_dc(hosts))
            )
        )

    # ------------------------------------------------------------ locks and staging
    async def lock_hosts(self) -> str | None:
        """Every datacenter's hosts locked and their facts as planned (None), or nothing changed anywhere
        and the refusals.

        A datacenter worker that refuses the plan itself (not signed with its key, or made from another
        inventory: activities.HostWork.plan) refuses the run, as a lock refused would."""
        groups = self.by_dc(list(self.hosts))
        got = await asyncio.gather(
            *(self.call("lock", self.work(dc, hs), defaults.LOCK_SECONDS) for dc, hs in groups),
            return_exceptions=True,
        )
        results: list[tuple[str, Done]] = []
        refusals: list[str] = []
        for (dc, _), done in zip(groups, got, strict=True):
            if isinstance(done, ActivityError) and getattr(done.cause, "type", None) in PLAN_REFUSALS:
                refusal = f"{dc}: {getattr(done.cause, 'message', None) or cause(done)}"
                if refusal not in refusals:  # each chunk of the datacenter says the same
                    refusals.append(refusal)
            elif isinstance(done, BaseException):
                raise done
            else:
                results.append((dc, done))
        refusals += [str(d.refused) for _, d in results if d.refused]
        for dc, done in results:
            self.merge(done)
            self.locked.setdefault(dc, []).extend(done.locked)
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
            for done in await self.each_dc("release", locked, 300):
                self.merge(done)
                stuck += done.stuck
        return sorted(stuck)

    async def stage(self, hosts: list[str]) -> dict[str, str]:
        """Each datacenter stages its hosts (and takes away what it staged if one of them failed)."""
        shares = self.by_dc(hosts)
        results = await asyncio.gather(
            *(self.call("stage", self.work(dc, hs, facts=self.facts_of(hs)), 1800) for dc, hs in shares)
        )
        for (_, share), done in zip(shares, results, strict=True):
            self.merge(done)
            if not done.ok:  # its activity took away what it staged
                self.unstaged.update(share)
        failed = {h: self.hosts[h].detail for h in hosts if self.hosts[h].state == HostState.FAILED}
        if failed:
            self.event("stage-failed", "staging failed; removing what this run staged — no live change was made")
        return failed

    async def unstage(self, hosts: list[str], failed: dict[str, str]) -> None:
        """The chunks that staged fine take their releases away again too."""
        clean = [h for h in hosts if h not in self.unstaged]
        if clean:
            for done in await self.each_dc("unstage", clean, 300):
                self.merge(done)


def run_end(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The run-end record's fields as this engine sends them: its hosts packed (~1 MB unpacked at 10,000
    hosts, over the payload budget); the control worker expands them into the journal's ``hosts``."""
    return packed.pack_run_end({**fields, "handshake_retries": 0, "engine": "temporal"})


def result(code: int, status: str, message: str, hosts: Iterable[HostRun]) -> dict[str, Any]:
    """The workflow's result (and its `progress` answers' ``outcome``): the verdict and the summary rows,
    packed by identical (datacenter, state, detail); packed.rows_of gives the rows back."""
    rows = packed.pack_rows((h.name, h.plan.datacenter, h.state, h.detail) for h in hosts)
    return {"exit_code": code, "status": status, "message": message, packed.ROWS_PACKED: rows}


def shares(hosts: list[str], dc_of: Callable[[str], str], size: int) -> list[tuple[str, list[str]]]:
    """``hosts`` per datacenter, each datacenter's in chunks of ``size`` (one activity each)."""
    out: dict[str, list[str]] = {}
    for h in hosts:
        out.setdefault(dc_of(h), []).append(h)
    return [(dc, share) for dc, hs in out.items() for share in chunks(hs, size)]


def chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
