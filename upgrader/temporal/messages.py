"""What the workflow, its activities and the client pass each other (plain dataclasses: JSON on the wire)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PlanRef:
    """Where a run's plan is: its compact text's sha256 names ``<artifact store>/plans/<sha256>.json.gz``
    (temporal/plan_store.py).  What the workflows and activities pass instead of the plan itself."""

    sha256: str  # hex, of the compact plan text: the file's name
    size: int  # bytes of the compact text: what the gzip file must inflate to, exactly
    gz_size: int  # bytes of the stored gzip file (the control worker serves its parts)
    parts: int  # plan_part activities that fetch it whole, each at most limits.PAYLOAD_BUDGET // 2
    gz_sha256: str  # hex, of the gzip file's bytes: a copy must be byte for byte the one the controller stored


@dataclass
class PlanPart:
    """One part of a stored plan, asked of the control worker (its ``plan_part`` activity)."""

    ref: PlanRef
    index: int
    artifacts: str  # the artifact store the controller named (the control worker's own --artifacts wins)


@dataclass
class Start:
    """A run, as the controller starts it: the verified plan by reference (stored in the artifact store),
    and what only the run knows."""

    run_id: str
    plan: PlanRef
    operator: str
    artifacts: str
    python: str = "python3"
    break_lock: str | None = None
    now_offset: float = 0.0  # --now minus the real time at the start (dry runs and lab tests); else 0
    overrides: str | None = None  # --overrides file, read by the control worker for window admission
    host_seconds: float | None = None  # past runs' median per host, for phase estimates
    run_start: dict[str, Any] = field(default_factory=dict)  # the journal's first record, as the client made it
    # planning/signing.sign_run over the plan, run id, python and break_lock, with the plan key: the
    # datacenter workers run nothing without it (README: Engines, the trust model).
    signature: str = ""


@dataclass
class Work:
    """One activity's share of the run: some hosts of one datacenter, with what the workflow knows of them."""

    run_id: str
    plan_hash: str
    datacenter: str
    hosts: list[str]
    operator: str
    artifacts: str
    python: str = "python3"
    break_lock: str | None = None
    # The hosts' HostRun fields, packed (engine/policy_state.pack_hosts): the run's workflow history holds
    # every lock, stage, unstage and release activity's, so a host costs its name, not its fields.
    states: list[list[Any]] = field(default_factory=list)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage: what it reads (host_actions.for_stage)
    testinfra: bool = False  # check rounds: also run the host's testinfra steps (the end of a bake)
    lock_check: bool = False  # check rounds: first check the host's lock is still this run's
    when: str = ""  # testinfra: when in the host's run its modules run ("at the end of the bake")
    plan: PlanRef | None = None  # the run's stored plan: the worker reads it from its own artifact store
    signature: str = ""  # Start.signature: the worker runs the plan only if it vouches for it


@dataclass
class Done:
    """What an activity found: the hosts' new states, the journal records it made, and its verdict."""

    states: list[list[Any]] = field(default_factory=list)  # packed, as Work.states
    records: list[dict[str, Any]] = field(default_factory=list)
    failures: int = 0
    ok: bool = True
    refused: str | None = None  # locks or artifacts refused: nothing was changed
    problem: str | None = None  # a check round failed: why
    handed_over: bool = False  # the check round's problem: the host's lock is no longer this run's
    ran: str = ""  # how a host's program or rollback ended (host_actions.Ran / Back)
    ops: list[dict[str, Any]] = field(default_factory=list)  # a failed check round's operations
    stuck: list[str] = field(default_factory=list)  # release: hosts that kept their lock (no answer)
    locked: list[str] = field(default_factory=list)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)  # lock: what stage reads, where there is any


@dataclass
class Records:
    """Journal records for the control worker to append (by seq: a retried batch is written once)."""

    run_id: str
    entries: list[dict[str, Any]]
    # The run's plan, copied once from the control worker's artifact store into the run's directory
    # (plan.json, as a local run writes it); ``artifacts``: the store the controller named.
    plan: PlanRef | None = None
    artifacts: str = ""


@dataclass
class Admission:
    run_id: str
    now: str  # ISO 8601: workflow time (plus the run's --now offset)
    estimate: float
    overrides: str | None = None


@dataclass
class Notice:
    """One notification for the inventory's webhooks (engine/notifier.py), as a local run sends it."""

    kind: str
    component: str
    version: str
    run: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Hosts:
    """A `hosts` child workflow's input: some hosts of a phase (or of a rollback) and the policy's state.

    The child runs ``hosts[next:]`` with a sliding window of ``window`` programs; a continue-as-new
    carries this on with ``next``, ``seq``, ``snapshot`` and ``events`` brought up to date."""

    start: Start  # the run's (its run_start left out: the parent wrote it)
    kind: str  # "phase": each host's program (RunHosts); "rollback": each host's rollback (RollBack)
    hosts: list[str]
    window: int
    seq: int  # the journal's last seq: the child's records go on from it
    snapshot: dict[str, Any]  # engine/policy_state.PolicyState.snapshot(hosts)
    abort: dict[str, Any] | None = None  # an abort signal the policy has not heard yet (gates.Decision)
    next: int = 0  # hosts[:next] were started by an earlier run of this child
    events: list[list[Any]] = field(default_factory=list)  # for `watch`: [cursor, kind, text, host, source]
    cursor: int = 0  # its `progress` cursor goes on across continue-as-new (a watcher asks from where it was)
    runs: int = 1  # this child's runs so far (each continue-as-new adds one)


@dataclass
class HostsDone:
    """What a `hosts` child hands back: the policy's state with its hosts', the next seq, its events."""

    snapshot: dict[str, Any]
    seq: int
    events: list[list[Any]] = field(default_factory=list)
    runs: int = 1
