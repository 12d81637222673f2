"""The run policy's state and the queries its drivers ask (engine/policy.py holds its programs).

Also what the drivers need to run a program: ``Program`` (a generator of actions), ``step``, and the
``Recovery`` a resumed run starts from.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any, TypeVar

from upgrader.engine import packing
from upgrader.engine.gates import Decision
from upgrader.engine.groups import Unavailable
from upgrader.engine.host_actions import HostRun, Timeouts
from upgrader.engine.policy_messages import Action, Answer
from upgrader.models.plan import Phase, Plan
from upgrader.planning import budgets

T = TypeVar("T")
TICK = 0.5  # seconds: the shortest bake interval (a wait goes no longer than this without looking for a stop)
Program = Generator[Action, Answer, T]  # what the drivers step: send an answer, get the next action


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


# HostRun.fields() left out of a packed group when they have these values (most hosts: not failed, healthy).
FIELD_DEFAULTS: dict[str, Any] = {"detail": "", "touched": False, "failure": "", "unhealthy": False}


def pack_hosts(states: Iterable[tuple[str, dict[str, Any]]]) -> list[list[Any]]:
    """Hosts' states (HostRun.fields()) grouped by identical fields, fields at their default left out
    (packing.pack): ``[[fields, [host, ...]], ...]``.  A phase's hosts mostly share one state and detail
    ("on 2.0.0, verified"), so a host costs its name (~14 B) instead of its fields (~110 B): the run's
    workflow history holds a child's input and result per pass."""
    return packing.pack(states, FIELD_DEFAULTS)


def unpack_hosts(packed: list[list[Any]] | dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``pack_hosts``' hosts and fields again (also the unpacked ``{host: fields}`` of earlier histories)."""
    if isinstance(packed, dict):
        yield from packed.items()
        return
    yield from packing.unpack(packed, FIELD_DEFAULTS)


class PolicyState:
    """What the run has decided so far, and what follows from it at once."""

    def __init__(
        self,
        plan: Plan,
        hosts: dict[str, HostRun],
        *,
        run_id: str,
        host_seconds: float | None = None,
        admission: bool = True,
    ) -> None:
        self.plan = plan
        self.spec = plan.spec
        self.hosts = hosts  # the driver keeps each host's state current (HostActions sets it)
        self.run_id = run_id
        self.host_seconds = host_seconds  # measured in past runs, when known
        self.admission = admission  # a window guard answers Admit (else every phase is admitted)
        self.timeouts = Timeouts.of(plan)
        self.failures = 0
        self.failures_in: dict[str, int] = {}  # per datacenter; like ``failures``, for the whole run
        self.budgets = budgets.of_plan(plan)
        self.down = Unavailable(plan.groups)  # redundancy groups: members down now (engine/groups.py)
        self.in_flight: dict[str, int] = {}  # per datacenter: host programs past their slot
        self.halted: str | None = None
        self.resumable = False  # the halt is one `resume` may carry on from (a signal, a closed window)
        self.signalled: str | None = None  # the signal that stopped the run (SIGINT, SIGTERM)
        self.stop_now = False  # a second signal: stop at the next safe point, start no rollback either
        self.held = False
        self.abort: Decision | None = None
        self._abort_handled = False
        self.locked: set[str] = set()  # hosts whose lock this run took (the driver says)
        self.recovered: set[str] = set()  # hosts put back after a lost worker: their program ran again once
        self.phase: Phase | None = None  # the phase whose hosts run now

    # ------------------------------------------------------------ handing the state over
    def snapshot(self, hosts: Iterable[str] | None = None) -> dict[str, Any]:
        """What the run has decided so far, as JSON: what another policy on the same plan needs to go on
        (a Temporal child workflow for a phase's hosts, and its continue-as-new).

        ``hosts``: only these hosts' states (a child's share; at 10,000 hosts all states would not fit
        one Temporal payload), packed (``pack_hosts``): a child's input and result are in the run's
        workflow history once per pass, so its size grows with the fleet.  ``locked`` is the driver's (it
        says which locks it took) and stays out; ``phase`` goes by its index (a host program reads only
        its kind)."""
        names = list(self.hosts) if hosts is None else list(hosts)
        return {
            "failures": self.failures,
            "failures_in": dict(sorted(self.failures_in.items())),
            "in_flight": dict(sorted(self.in_flight.items())),
            "halted": self.halted,
            "resumable": self.resumable,
            "signalled": self.signalled,
            "stop_now": self.stop_now,
            "held": self.held,
            "abort": self.abort.to_dict() if self.abort else None,
            "abort_handled": self._abort_handled,
            "recovered": sorted(self.recovered),
            "phase": self.phase.index if self.phase else None,
            "groups": self.down.to_dict(),
            "hosts": pack_hosts((h, self.hosts[h].fields()) for h in names),
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Take over ``snapshot``'s state: the run-wide fields replaced, the hosts it names loaded."""
        self.failures, self.failures_in = int(data["failures"]), dict(data["failures_in"])
        self.in_flight = dict(data["in_flight"])
        self.halted, self.resumable = data["halted"], bool(data["resumable"])
        self.signalled, self.stop_now, self.held = data["signalled"], bool(data["stop_now"]), bool(data["held"])
        self.abort = Decision.from_dict(data["abort"]) if data["abort"] is not None else None
        self._abort_handled = bool(data["abort_handled"])
        self.recovered = set(data["recovered"])
        self.phase = self.plan.phases[data["phase"]] if data["phase"] is not None else None
        self.down.load(data["groups"])
        for host, fields in unpack_hosts(data["hosts"]):
            self.hosts[host].load(fields)

    # ------------------------------------------------------------ queries the drivers ask
    def stopping(self) -> bool:
        """Should a wait end now: a stop (signal, halt) or an operator's abort."""
        return self.halted is not None or self.abort is not None

    def interrupt(self, signal: str) -> str:
        """A signal (SIGINT, SIGTERM) came: what to tell the operator.  First: no new host starts and the
        waits end; second: as well, no rollback starts (resume does it)."""
        if self.signalled is None:
            self.signalled = signal
            self.halted = self.halted or f"stopped by {signal}: no new hosts started"
            return (
                f"{signal}: stopping — waits end now, hosts in flight finish their step, a canary whose bake "
                "was cut goes back; press Ctrl-C again to stop at the next safe point without rolling back"
            )
        if not self.stop_now:
            self.stop_now = True
            return (
                f"{signal} again: stopping at the next safe point (after the host steps in flight); no rollback "
                "starts — `upgrader resume` finishes the job"
            )
        return f"{signal}: already stopping at the next safe point"

    def count(self, host: str) -> None:
        """A host failed: counted against the run's and its datacenter's budgets."""
        self.failures += 1
        dc = self.hosts[host].plan.datacenter
        self.failures_in[dc] = self.failures_in.get(dc, 0) + 1

    def estimate(self, phase: Phase) -> float:
        """Seconds the phase should take: past runs' median per host, else a quarter of the ceiling."""
        hops = max(len(self.hosts[h].plan.path) for h in phase.hosts)
        per_host = self.host_seconds or self.timeouts.hop / 4
        waves = -(-len(phase.hosts) // self.spec.rollout.max_in_flight_per_datacenter)
        return per_host * hops * waves + phase.bake

    def by_turns(self, hosts: list[str]) -> list[str]:
        """Hosts in turn by datacenter, so one datacenter's gate cannot hold every worker."""
        return by_turns(hosts, lambda h: self.hosts[h].plan.datacenter)


def by_turns(hosts: list[str], key: Callable[[str], str]) -> list[str]:
    """``hosts`` reordered one per group in turn (each group's own order kept): a, b, a, b, a."""
    groups: dict[str, list[str]] = {}
    for h in hosts:
        groups.setdefault(key(h), []).append(h)
    return [h for turn in zip_longest(*groups.values()) for h in turn if h is not None]


def step(program: Program[T], answer: Answer | None) -> tuple[Action | None, T | None]:
    """Advance ``program`` by one answer: its next action, or (None, what it returned) once it ends.

    The drivers' one way to run a program (the first answer is None, as a generator starts)."""
    try:
        return (next(program) if answer is None else program.send(answer)), None
    except StopIteration as end:
        return None, end.value
