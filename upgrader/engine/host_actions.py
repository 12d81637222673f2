"""What happens on a host during a run: lock and facts, stage, the upgrade program, a round of checks,
testinfra, rollback, release.  One public class, ``HostActions``, used by both drivers (the local
threads of engine/apply.py and the Temporal activities of temporal/activities.py).

Each method does the host I/O (through the host's Session, engine/remote.py), journals what it did
and sets the host's state; it decides nothing about the run: whether a failure halts it, who is
rolled back, how long a bake lasts are the policy's (engine/policy.py).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from upgrader.defaults import LOCK_TIMEOUT, SAFETY_MARGIN, STAGE_PARALLEL
from upgrader.engine import programs, remote
from upgrader.engine.pool import Pool
from upgrader.engine.progress import Listener
from upgrader.errors import RefusedError, TransportError
from upgrader.journal import Journal, controller
from upgrader.models.plan import ArtifactRef, HostPlan, Plan, Step
from upgrader.vocabulary import (
    NEEDS_A_HUMAN,
    ON_TARGET,
    Event,
    HostEnd,
    HostState,
    RollbackEnd,
)


class HandedOver(str):
    """A check round's answer when the host's lock is no longer this run's (the result's ``handed_over``)."""


@dataclass
class HostRun:
    plan: HostPlan
    state: HostState = HostState.PENDING
    detail: str = ""
    touched: bool = False  # something live changed (service stopped, link switched)
    failure: str = ""
    unhealthy: bool = False  # its running release failed the precheck's checks: untouched, yet on no verified release

    @property
    def name(self) -> str:
        return self.plan.host

    def fields(self) -> dict[str, Any]:
        """As the Temporal messages carry it (messages.Work.states, Done.states)."""
        return {
            "state": self.state,
            "detail": self.detail,
            "touched": self.touched,
            "failure": self.failure,
            "unhealthy": self.unhealthy,
        }

    def load(self, fields: dict[str, Any]) -> None:
        self.state, self.detail = HostState(fields["state"]), fields["detail"]
        self.touched, self.failure = fields["touched"], fields["failure"]
        self.unhealthy = bool(fields.get("unhealthy"))

    def version(self) -> str | None:
        """The version the host is known to be on now (None: unknown, a human must look)."""
        if self.state in ON_TARGET:  # VERIFIED: a canary whose bake a stop cut short, checked after its start
            return self.plan.path[-1]
        if self.state in (HostState.PENDING, HostState.STAGED, HostState.UNTOUCHED, HostState.ROLLED_BACK) or (
            self.state == HostState.FAILED and not self.touched
        ):
            return self.plan.from_version
        return None


class Ran(StrEnum):
    """How a host's upgrade program ended (HostActions.upgrade)."""

    OK = "ok"  # on the target, verified (a canary: its bake comes next)
    FAILED = "failed"  # a step or testinfra failed: the host is FAILED (touched says whether it changed)
    UNREACHABLE = "unreachable"  # the call failed on the connection: outcome unknown, counted changed
    HANDED_OVER = "handed-over"  # its lock was taken over (an emergency rollback): not this run's any more


class Back(StrEnum):
    """How a host's rollback ended (HostActions.rolled_back)."""

    ROLLED_BACK = "rolled-back"
    HANDED_OVER = "handed-over"
    FAILED = "failed"


@dataclass(frozen=True)
class Timeouts:
    """Every agent call's timeout, from the plan's own budgets plus one margin (defaults.SAFETY_MARGIN)."""

    hop: float
    checks: float

    @classmethod
    def of(cls, plan: Plan) -> Timeouts:
        return cls(programs.hop_timeout(plan.spec), programs.checks_budget(plan.spec))

    def upgrade(self, hops: int) -> float:
        return self.hop * hops + self.checks + SAFETY_MARGIN

    def check_round(self) -> float:
        return self.checks + SAFETY_MARGIN

    def rollback(self) -> float:
        return self.hop + SAFETY_MARGIN


class HostActions:
    """The run's hosts: their states, locks and facts, and every operation the run sends them."""

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
        on_fail: Callable[[str], None] | None = None,
    ) -> None:
        self.plan = plan
        self.spec = plan.spec
        self.pool = pool
        self.journal = journal
        self.progress = progress
        self.artifacts = artifacts
        self.operator = operator
        self.controller = controller()
        self.break_lock = break_lock
        self.python = python
        self.on_fail = on_fail or (lambda host: None)  # the policy counts failures (budgets)
        self.timeouts = Timeouts.of(plan)
        self.hosts = {h.host: HostRun(h) for h in plan.hosts}
        self.locked: set[str] = set()
        self.facts: dict[str, dict[str, Any]] = {}
        self.failed_round: dict[str, list[dict[str, Any]]] = {}  # host -> its last failed check round's ops
        self.failed: list[str] = []  # hosts this object marked failed, in order
        self._mutex = threading.Lock()

    # ------------------------------------------------------------ helpers
    def call(
        self, host: str, ops: list[dict[str, Any]], timeout: float, idempotent: bool = False
    ) -> remote.AgentResult:
        return self.pool.session(host).call(
            component=self.spec.component,
            root=self.spec.install.root,
            run=self.journal.run_id,
            ops=ops,
            timeout=timeout,
            python=self.python,
            idempotent=idempotent,
        )

    def set(self, host: str, state: HostState, detail: str = "") -> None:
        run = self.hosts[host]
        run.state, run.detail = state, detail
        self.progress.host_state(host, state, detail)

    def fail(self, host: str, state: HostState, detail: str) -> None:
        with self._mutex:
            self.failed.append(host)
        self.on_fail(host)
        self.hosts[host].failure = detail
        self.set(host, state, detail)
        self.progress.failure(detail, host=host)

    def lock_op(self, mode: str, reason: str | None = None) -> dict[str, Any]:
        return programs.lock_op(
            mode, operator=self.operator, plan=self.plan.content_hash, reason=reason, controller=self.controller
        )

    def steps(self, host: str, action: str) -> list[Step]:
        return [s for s in self.hosts[host].plan.steps if s.action == action]

    def undo(self, host: str) -> dict[str, Any]:
        """The plan's undo of the host's live steps: roll back to where it began (every live step has the same)."""
        hp = self.hosts[host].plan
        undo = hp.undo
        if undo is None:
            raise RefusedError(f"the plan has no rollback for {host}", "plan again")
        return undo

    # ------------------------------------------------------------ artifacts and locks
    def artifact_path(self, art: ArtifactRef) -> Path:
        if art.url and art.url.startswith("file://"):
            return Path(art.url.removeprefix("file://"))
        if art.url:
            raise RefusedError(
                f"artifact {art.url} must be fetched into the artifact store first",
                f"download it into {self.artifacts} and refer to it with 'file:'",
            )
        return self.artifacts / (art.file or "")

    def check_artifacts(self) -> None:
        """Refuse before touching any host if an artifact is missing or its digest differs."""
        for art in self.plan.artifacts:
            path = self.artifact_path(art)
            if not path.is_file():
                raise RefusedError(
                    f"artifact for {self.plan.component} {art.version} not found: {path}",
                    "build or download it into the artifact store (--artifacts DIR)",
                )
            if art.size is not None and path.stat().st_size != art.size:
                raise RefusedError(
                    f"artifact {path} is {path.stat().st_size} bytes, playbook says {art.size}",
                    "fetch the vendor's artifact again; nothing was changed on any host",
                )
            digest = _sha256(path)
            if digest != art.sha256:
                self.journal.record(
                    Event.ARTIFACT_REFUSED, version=art.version, path=str(path), sha256=digest, expected=art.sha256
                )
                raise RefusedError(
                    f"sha256 mismatch for {path.name}: file has {digest}, playbook says {art.sha256}",
                    "the artifact is not the one reviewed; nothing was changed on any host",
                )
        self.journal.record(Event.ARTIFACTS_CHECKED, artifacts=[a.model_dump() for a in self.plan.artifacts])

    def lock(self, expect: dict[str, str | None] | None = None) -> None:
        """Take every host's lock and check its facts still match the plan; refuse as a whole.

        ``expect``: the version a resumed run's host may be on (None: either side of a switch)."""
        mode = "break" if self.break_lock else "acquire"
        if self.break_lock:
            self.journal.record(Event.LOCK_BREAK, reason=self.break_lock, operator=self.operator)
        ops = [self.lock_op(mode, self.break_lock), programs.facts_op(self.spec)]
        results = self.pool.each(self.hosts, lambda h: self.call(h, ops, LOCK_TIMEOUT, idempotent=True))
        refusals = []
        for r in results:
            host, res = r.host, r.value
            if res is None:
                refusals.append(f"{host}: {r.error}")
                continue
            lock = res.op("lock")
            if lock is not None and lock.ok:
                self.locked.add(host)
            if not res.ok:
                refusals.append(f"{host}: {res.error}")
                continue
            facts = res.op("facts").data  # type: ignore[union-attr]
            self.facts[host] = facts
            hp = self.hosts[host].plan
            allowed = {hp.from_version}
            if expect is not None and host in expect:
                expected = expect[host]  # None: caught mid-step, on either side of a switch
                allowed = {expected} if expected else {hp.from_version, *hp.path}
            if facts.get("installed") not in allowed:
                want = " or ".join(sorted(allowed))
                refusals.append(f"{host}: now on {facts.get('installed')}, plan expected {want} — plan again")
        self.journal.record(Event.LOCKS, held=sorted(self.locked), refusals=refusals)
        if refusals:
            self.release()
            raise RefusedError(
                "refused before changing anything: " + "; ".join(refusals),
                "see who holds the lock with `upgrader status`; a stale lock needs --break-lock REASON",
            )

    def release(self) -> list[str]:
        """Release this run's host locks (but those of hosts a human must see to); the hosts that kept them
        because they did not answer."""
        if not self.locked:
            return []
        keep = {h.name for h in self.hosts.values() if h.state in NEEDS_A_HUMAN}

        def release(host: str) -> remote.AgentResult:
            ops: list[dict[str, Any]] = []
            if self.hosts[host].state == HostState.DONE:
                ops.append(
                    {"op": "prune", "step": None, "keep": self.spec.install.keep_releases, "continue_on_error": True}
                )
            ops.append(self.lock_op("release"))
            return self.call(host, ops, LOCK_TIMEOUT, idempotent=True)

        targets = sorted(self.locked - keep)
        results = self.pool.each(targets, release)
        self.journal.record(
            Event.LOCKS_RELEASED,
            hosts=targets,
            kept=sorted(keep & self.locked),
            errors={h: str(e) for h, e in results.failed.items()},
        )
        self.locked.clear()
        return sorted(h for h in targets if not _released(results[h].value))

    # ------------------------------------------------------------ stage
    def stage(self, hosts: list[str]) -> dict[str, str]:
        """Upload and unpack the release on ``hosts``; the hosts that failed, and why."""
        arts = {a.version: a for a in self.plan.artifacts}
        self.journal.record(Event.STAGE_BEGIN, hosts=sorted(hosts))

        def stage_host(host: str) -> remote.AgentResult | None:
            facts = self.facts.get(host, {})
            ops = []
            steps = self.steps(host, "stage")
            for step in steps:
                if facts.get("staged_sha", {}).get(step.version) == step.op["sha256"]:
                    continue
                art = arts[str(step.version)]
                upload = f"/var/tmp/upgrader-{self.journal.run_id}-{art.sha256[:16]}.tar.gz"
                self.pool[host].put(self.artifact_path(art), upload)
                ops.append(send(step.op, step.id, upload=upload))
            self.journal.record(Event.STAGE_HOST, host=host, steps=[s.id for s in steps], sent=[o["step"] for o in ops])
            if not ops:
                return None
            return self.call(host, ops, 300.0)

        results = self.pool.each(hosts, stage_host, limit=STAGE_PARALLEL)
        failed = {}
        for r in results:
            host, res = r.host, r.value
            if not r.ok or (res is not None and not res.ok):
                failed[host] = str(r.error) if res is None else res.error
                self.set(host, HostState.FAILED, f"staging: {failed[host]}")
            else:
                self.set(host, HostState.STAGED, "already staged" if res is None else "staged")
        self.journal.record(Event.STAGE_END, failed=failed)
        if failed:
            self.progress.stage_failed(
                f"staging failed on {len(failed)} host(s); removing what this run staged — no live change was made",
            )
            for host, reason in failed.items():
                self.progress.stage_failed(reason, host=host)
        return failed

    def unstage(self, hosts: list[str], failed: dict[str, str] | None = None) -> None:
        """Each stage step's undo: removes the release only where this run staged it."""
        self.pool.each(
            hosts,
            lambda h: self.call(
                h, [send(s.undo, s.id) for s in self.steps(h, "stage") if s.undo], 60.0, idempotent=True
            ),
        )
        for host in hosts:
            if host not in (failed or {}):
                self.set(host, HostState.UNTOUCHED, "release removed again")

    # ------------------------------------------------------------ the host's program
    def upgrade(self, host: str) -> Ran:
        """The plan's live steps in one agent call, then the host's testinfra steps."""
        hp = self.hosts[host].plan
        # The plan's own steps, as they are: staging is done, the bake comes after.
        ops = [self.lock_op("check"), *(send(s.op, s.id) for s in live_steps(hp))]
        self.journal.record(Event.HOST_BEGIN, host=host, steps=program_steps(hp), path=hp.path)
        self.set(host, HostState.UPGRADING, " → ".join([hp.from_version, *hp.path]))
        try:
            res = self.call(host, ops, self.timeouts.upgrade(len(hp.path)))
        except TransportError as exc:
            self.hosts[host].touched = True  # unknown: assume the worst, rollback will find out
            self.journal.record(Event.HOST_END, **HostEnd(host=host, ok=False, error=str(exc), unreachable=True))
            self.fail(host, HostState.UNREACHABLE, str(exc))
            return Ran.UNREACHABLE
        self.journal.record(
            Event.HOST_END,
            **HostEnd(
                host=host,
                ok=res.ok,
                ops=[o.data for o in res.ops],
                stderr=res.result.stderr[-2000:] if not res.ok else "",
            ),
        )
        if res.ok:
            self.hosts[host].touched = True
            if not self.testinfra(host, "after start"):
                return Ran.FAILED
            self.set(host, HostState.VERIFIED, f"on {hp.path[-1]}")
            if not hp.canary:
                self.set(host, HostState.DONE, f"on {hp.path[-1]}, verified")
            return Ran.OK
        if res.handed_over is not None:
            self.set(host, HostState.HANDED_OVER, res.handed_over)
            return Ran.HANDED_OVER
        failed = res.failed
        self.hosts[host].touched = any(o.op in ("stop", "switch") for o in res.ops)
        self.hosts[host].unhealthy = bool(
            failed is not None and failed.op == "precheck" and failed.data.get("unhealthy")
        )
        self.fail(host, HostState.FAILED, res.error)
        return Ran.FAILED

    def check_round(self, host: str, lock: bool = False) -> str | None:
        """One round of the host's canary checks (its bake step, for no longer than one round).

        ``lock``: first check the host is still this run's (an emergency rollback may have taken it over:
        then the answer is a HandedOver)."""
        bakes = self.steps(host, "bake")
        if not bakes:
            return None
        check = [self.lock_op("check")] if lock else []
        try:
            res = self.call(host, [*check, *(send(s.op, s.id, duration=0) for s in bakes)], self.timeouts.check_round())
        except TransportError as exc:
            return f"unreachable: {exc}"
        if res.handed_over is not None:
            return HandedOver(res.handed_over)
        if not res.ok:  # the failed round's operations (check results, output) go into its bake-end record
            self.failed_round[host] = [o.data for o in res.ops]
        return None if res.ok else res.error or "checks failed"

    def testinfra(self, host: str, when: str) -> bool:
        """The host's testinfra steps, run from the controller; False (the host failed) if one does not pass."""
        from upgrader.engine.testinfra_check import run_module

        base = Path(self.plan.playbook.path).parent  # modules are named relative to the playbook
        for step in self.steps(host, "testinfra"):
            op = step.op
            self.set(host, HostState.VERIFYING, f"testinfra {op['file']} ({when})")
            result = run_module(
                base / str(op["file"]),
                self.pool.endpoint(host),
                component=self.plan.component,
                version=str(op["version"]),
                timeout=float(op["timeout"]),
                # Run the reviewed bytes: a module edited after apply checked its pins never runs.
                # Always pinned: a plan that pins nothing (forged, or saved by an older
                # upgrader) runs no module, rather than the unpinned one on disk.
                pinned=self.plan.controller_files,
                base=base,
            )
            self.journal.record(
                Event.TESTINFRA, host=host, step=step.id, when=when, file=op["file"], **result.to_dict()
            )
            if not result.ok:
                self.fail(host, HostState.FAILED, f"testinfra {op['name']} ({when}): {result.reason}")
                return False
        return True

    # ------------------------------------------------------------ rollback
    def roll_back(self, host: str) -> remote.AgentResult:
        """Put ``host`` back where it began and verify (the plan's undo; safe to repeat)."""
        hp = self.hosts[host].plan
        self.set(host, HostState.ROLLING_BACK, f"→ {hp.from_version}")
        # The lock check first: a host an emergency rollback took over is not ours to touch any more.
        return self.call(
            host, [self.lock_op("check"), send(self.undo(host), f"{host}/rollback")], self.timeouts.rollback()
        )

    def rolled_back(self, host: str, res: remote.AgentResult | None, error: BaseException | str | None) -> Back:
        """Journal and set the end of ``host``'s rollback (``res`` None: the call raised ``error``)."""
        hp = self.hosts[host].plan
        was = self.hosts[host].failure
        if res is not None and res.handed_over is not None:
            self.set(host, HostState.HANDED_OVER, f"taken over by another run: {res.handed_over}")
            self.hosts[host].touched = False
            self.journal.record(
                Event.ROLLBACK_END, host=host, ok=True, handed_over=True, busy=res.busy, error=res.error
            )
            return Back.HANDED_OVER
        if res is None or not res.ok:
            why = str(error) if res is None else res.error
            self.set(host, HostState.ROLLBACK_FAILED, why)
            self.journal.record(Event.ROLLBACK_END, host=host, ok=False, error=why)
            return Back.FAILED
        self.set(
            host,
            HostState.ROLLED_BACK,
            f"back on {hp.from_version}, verified" + (f" (failed: {was})" if was else ""),
        )
        self.hosts[host].touched = False
        self.journal.record(
            Event.ROLLBACK_END,
            **RollbackEnd(host=host, ok=True, ops=[o.data for o in res.ops], version=hp.from_version),
        )  # where it is now
        return Back.ROLLED_BACK


def live_steps(hp: HostPlan) -> list[Step]:
    """The steps of the host's program: staging is done before it, the bake and testinfra come after."""
    return [s for s in hp.steps if s.action not in ("stage", "bake", "testinfra")]


def program_steps(hp: HostPlan) -> list[str]:
    """The host-begin record's steps: the lock check, then the program's own."""
    return ["lock-check", *(s.id for s in live_steps(hp))]


def send(op: dict[str, Any], step: str, **runtime: Any) -> dict[str, Any]:
    """A plan step's operation as sent: the plan's own, with its step id and what only the run knows."""
    return {**op, "step": step, **runtime}


def for_stage(facts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Of the hosts' facts, what ``stage`` reads (the releases already staged, by sha256), for the hosts that
    have any: what a Temporal run's workflow keeps from its lock activities and hands its stage activities
    (both in its history: the whole facts are ~300 B a host, this is nothing on a fleet staged fresh)."""
    out: dict[str, dict[str, Any]] = {}
    for host, found in facts.items():
        staged = {v: sha for v, sha in (found.get("staged_sha") or {}).items() if sha}
        if staged:
            out[host] = {"staged_sha": staged}
    return out


def _released(res: remote.AgentResult | None) -> bool:
    """Whether a host answered its release (its lock op ran: released, or already another's)."""
    lock = res.op("lock") if res is not None else None
    return lock is not None and lock.ok


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
