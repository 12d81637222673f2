"""The workflow's activities: the local engine's own host code, run by a worker inside a datacenter.

Each host activity builds the engine's ``HostActions`` (engine/host_actions.py) for the hosts it was
given, with the states the workflow knows, and runs one of its methods: lock and facts, stage, a host's
program, a round of checks, rollback, release.  So what goes to a host is what a local run sends: the
plan's own step operations through the host's Session on this worker's Pool.  An activity decides
nothing: it reports what happened, and the workflow's policy (engine/policy.py) decides.  The engine's journal records
are collected (``Collected``) and handed back to the workflow, which writes them in order.

The plan is read from this worker's artifact store, by the reference the workflow gives (``Work.plan``:
plan_store.py, ``<store>/plans/<sha256>.json.gz``), and its size and sha256 are checked.  Nothing the
workflow says is trusted: anyone who can start a workflow in the namespace can run a workflow of their
own that names any plan and any hash.  So a plan runs only if the controller's signature
(``Work.signature``: HMAC-SHA256 with the plan key, planning/signing.sign_run) vouches for it together
with the run id, the python and the break_lock of this very activity, under the key this worker holds;
then it must hash to the hash the workflow names and have been made from this worker's inventory file,
byte for byte.

The blocking engine call runs in a thread while the activity heartbeats every second: a worker that
is SIGKILLed stops heartbeating and the workflow hears of it within HEARTBEAT seconds.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from upgrader.defaults import BEAT
from upgrader.engine.host_actions import Back, HandedOver, HostActions, Ran, for_stage
from upgrader.engine.policy_state import pack_hosts, unpack_hosts
from upgrader.engine.pool import Pool
from upgrader.engine.progress import Lines
from upgrader.errors import HostBusy, RefusedError
from upgrader.journal import JOURNAL, Journal
from upgrader.loading.inputs import Loaded, read_plan_text
from upgrader.models.inventory import Inventory
from upgrader.models.plan import Plan
from upgrader.planning import signing
from upgrader.temporal import plan_store
from upgrader.temporal.messages import Done, Work

T = TypeVar("T")


class Collected(Journal):
    """The engine's journal inside an activity: records are kept for the workflow, which writes them."""

    def __init__(self, run_id: str) -> None:  # no file: nothing is written on a datacenter's worker
        self.directory = Path(run_id)
        self.path = self.directory / JOURNAL
        self.entries_made: list[dict[str, Any]] = []

    def record(self, event: str, **data: Any) -> dict[str, Any]:
        entry = {"at": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, **data}
        self.entries_made.append(entry)
        return entry


@dataclass
class HostWork:
    """A worker's means: its inventory, one Pool for its lifetime, its artifact store (releases and plans)."""

    inventory: Loaded[Inventory]
    pool: Pool
    artifacts: Path | None = None  # overrides the controller's artifact path (another machine's layout)
    quiet: bool = False
    plan_key: bytes | None = None  # planning/signing: a plan runs only with the controller's signature under it
    plans: dict[str, Plan] = field(default_factory=dict)  # by the stored plan's sha256 (PlanRef.sha256)
    # (sha256, hash, run, python, lock): what a signature vouched for, checked once per worker
    vouched: set[tuple[str, str, str, str, str | None]] = field(default_factory=set)

    # ------------------------------------------------------------ the engine for one activity
    async def plan(self, work: Work) -> Plan:
        """The run's plan, from this worker's artifact store, verified: the file's sha256 and size, then the
        controller's signature, the plan's hash and its inventory (each refusal non-retryable, typed)."""
        ref = work.plan
        if ref is None:
            raise ApplicationError(
                f"run {work.run_id}: the workflow names no stored plan: refused, nothing was run",
                non_retryable=True,
                type="PlanNotSigned",
            )
        sha = str(ref.sha256)
        vouched = (sha, work.plan_hash, work.run_id, work.python, work.break_lock)
        if vouched not in self.vouched:
            store = self.artifacts or Path(work.artifacts)
            try:
                text = await asyncio.to_thread(plan_store.read, store, ref)
            except plan_store.PlanStoreError as exc:
                raise ApplicationError(
                    f"run {work.run_id}: {exc}", non_retryable=True, type=plan_store.PlanStoreError.__name__
                ) from None
            signature = work.signature
            if (
                self.plan_key is None
                or not isinstance(signature, str)
                or not signing.run_signed(signature, text, work.run_id, work.python, work.break_lock, self.plan_key)
            ):
                raise ApplicationError(
                    f"run {work.run_id}: the plan is not signed with this worker's plan key (or its run id, python "
                    "or break_lock were changed): refused, nothing was run",
                    non_retryable=True,
                    type="PlanNotSigned",
                )
            known = self.plans.get(sha)  # the same text, verified for another run: parsed once
            plan = known if known is not None else read_plan_text(text, f"plan of run {work.run_id}")
            if plan.compute_hash() != work.plan_hash:
                raise ApplicationError(
                    f"the plan of run {work.run_id} does not hash to {work.plan_hash}", non_retryable=True
                )
            if plan.inventory.sha256 != self.inventory.sha256:
                raise ApplicationError(
                    f"this worker's inventory {self.inventory.path} is not the one run "
                    f"{work.run_id} was planned from (sha256 {plan.inventory.sha256[:12]}…)",
                    non_retryable=True,
                    type="InventoryDiffers",
                )
            self.plans[sha] = plan
            self.vouched.add(vouched)
        return self.plans[sha]

    def engine(self, plan: Plan, work: Work) -> HostActions:
        mine = plan.model_copy(update={"hosts": [h for h in plan.hosts if h.host in work.hosts]})
        stream = io.StringIO() if self.quiet else sys.stderr
        actions = HostActions(
            mine,
            self.pool,
            Collected(work.run_id),
            Lines("plain", stream=stream),
            artifacts=self.artifacts or Path(work.artifacts),
            operator=work.operator,
            break_lock=work.break_lock,
            python=work.python,
        )
        for host, fields in unpack_hosts(work.states):
            actions.hosts[host].load(fields)
        actions.facts = dict(work.facts)
        return actions

    async def run(self, work: Work, act: Callable[[HostActions], Done]) -> Done:
        """``act(actions)`` in a thread, heartbeating meanwhile; the hosts' states and records added.

        The engine is built in that thread too: the event loop only takes activities off the queue and
        heartbeats, so a wave's activities start together even when the worker gets little CPU (256 real
        hosts on 2 busy cores: built on the loop, a wave's 127 activities started over 15-20 s)."""
        plan = await self.plan(work)
        if not self.quiet:  # the worker's log says which worker ran what (the run's journal says what happened)
            info = activity.info()
            print(
                f"{datetime.now(UTC):%H:%M:%S} run {work.run_id}: {info.activity_type} {' '.join(work.hosts)} "
                f"(attempt {info.attempt})",
                file=sys.stderr,
                flush=True,
            )

        def blocking() -> Done:
            actions = self.engine(plan, work)
            done = act(actions)
            done.states = pack_hosts((h, r.fields()) for h, r in actions.hosts.items())
            assert isinstance(actions.journal, Collected)
            done.records = actions.journal.entries_made
            done.failures += len(actions.failed)
            return done

        return await beating(blocking)

    # ------------------------------------------------------------ activities
    @activity.defn(name="lock")
    async def lock(self, work: Work) -> Done:
        """This datacenter's artifacts checked (the copies it uploads), then its hosts' locks and facts."""

        def act(actions: HostActions) -> Done:
            try:
                actions.check_artifacts()
                actions.lock()
            except RefusedError as exc:
                return Done(ok=False, refused=f"{work.datacenter}: {exc}")
            return Done(locked=sorted(actions.locked), facts=for_stage(actions.facts))

        return await self.run(work, act)

    @activity.defn(name="stage")
    async def stage(self, work: Work) -> Done:
        """Stage this datacenter's hosts; if one fails, take away what this run staged here."""

        def act(actions: HostActions) -> Done:
            hosts = list(actions.hosts)
            failed = actions.stage(hosts)
            if failed:
                actions.unstage(hosts, failed)
            return Done(ok=not failed, failures=len(failed))

        return await self.run(work, act)

    @activity.defn(name="unstage")
    async def unstage(self, work: Work) -> Done:
        """Another datacenter failed to stage: each stage step's undo here too (removes what this run staged)."""

        def act(actions: HostActions) -> Done:
            actions.unstage(list(actions.hosts))
            return Done()

        return await self.run(work, act)

    @activity.defn(name="upgrade")
    async def upgrade(self, work: Work) -> Done:
        """The host's program: the plan's live steps in one agent call (run once: never retried)."""

        def act(actions: HostActions) -> Done:
            host = work.hosts[0]
            ran = actions.upgrade(host)
            return Done(ok=ran is Ran.OK, ran=str(ran))

        return await self.run(work, act)

    @activity.defn(name="check")
    async def check(self, work: Work) -> Done:
        """One round of the host's canary checks (and its testinfra steps at the end of a bake)."""

        def act(actions: HostActions) -> Done:
            host = work.hosts[0]
            problem = actions.check_round(host, lock=work.lock_check)
            if problem is None and work.testinfra and not actions.testinfra(host, "at the end of the bake"):
                problem = actions.hosts[host].failure
            actions.failed.clear()  # the workflow counts the failure (its bake or gate decides)
            handed = isinstance(problem, HandedOver)  # a field: a str subclass does not survive the payload
            return Done(ok=problem is None, problem=problem, handed_over=handed, ops=actions.failed_round.pop(host, []))

        return await self.run(work, act)

    @activity.defn(name="testinfra")
    async def testinfra(self, work: Work) -> Done:
        """The host's testinfra steps, run from this worker (inside the host's datacenter)."""

        def act(actions: HostActions) -> Done:
            return Done(ok=actions.testinfra(work.hosts[0], work.when))

        return await self.run(work, act)

    @activity.defn(name="rollback")
    async def rollback(self, work: Work) -> Done:
        """Put a host back where it began and verify (safe to repeat).  A host still running an earlier
        program (its worker died mid-program) is waited for: the attempt fails and Temporal retries it."""

        def act(actions: HostActions) -> Done:
            back = []
            for host in actions.hosts:
                res, error = None, None
                try:
                    res = actions.roll_back(host)
                except Exception as exc:  # the connection: a rollback not confirmed
                    error = exc
                if res is not None and res.busy:  # the agent's field: another program still holds the host
                    raise ApplicationError(str(HostBusy(host, res.error)), type=HostBusy.__name__)
                back.append(str(actions.rolled_back(host, res, error)))
            return Done(ok=all(b == Back.ROLLED_BACK for b in back), ran=",".join(back))

        return await self.run(work, act)

    @activity.defn(name="release")
    async def release(self, work: Work) -> Done:
        """Release the hosts' locks; ``stuck``: those that did not answer (they keep the lock: exit 4)."""

        def act(actions: HostActions) -> Done:
            actions.locked = set(work.hosts)
            return Done(stuck=actions.release())

        return await self.run(work, act)

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.lock,
            self.stage,
            self.unstage,
            self.upgrade,
            self.check,
            self.testinfra,
            self.rollback,
            self.release,
        ]


async def beating(fn: Callable[[], T]) -> T:
    """fn() in a thread; the activity heartbeats every BEAT seconds until it returns."""
    task = asyncio.ensure_future(asyncio.to_thread(fn))
    while True:
        activity.heartbeat()
        done, _ = await asyncio.wait({task}, timeout=BEAT)
        if done:
            return task.result()
