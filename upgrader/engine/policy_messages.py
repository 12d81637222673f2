"""What the run policy (engine/policy.py) and its drivers say to each other: typed actions and events.

The policy's programs yield an ``Action`` (something for the driver to carry out: run a host's
program, wait until a time, record a journal event...) and get back the ``Event`` it asked for
(the host's program ended, the wait ended, the gate was decided...).  Each action names the event
that answers it in its docstring; an action with no answer (record, notify, say, set) gets ``Done``.

Times are seconds on the driver's clock (``now``): the policy reads no clock of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from upgrader.engine.gates import Decision
from upgrader.engine.host_actions import Back, Ran
from upgrader.engine.progress import ProgressKind
from upgrader.vocabulary import Event as Journaled
from upgrader.vocabulary import HostState

# ------------------------------------------------------------ actions


class Kind(StrEnum):
    """What an action asks of the driver (for drivers that dispatch on a value, and for logs)."""

    RECORD = "record"
    NOTIFY = "notify"
    SAY = "say"
    SET = "set"
    FAIL = "fail"
    STAGE = "stage"
    UNSTAGE = "unstage"
    RUN_HOSTS = "run-hosts"
    RUN_HOST = "run-host"
    CHECK_ROUND = "check-round"
    TESTINFRA = "testinfra"
    ROLL_BACK = "roll-back"
    ROLL_BACK_HOST = "roll-back-host"
    WAIT_UNTIL = "wait-until"
    AWAIT_CHANGE = "await-change"
    ASK_ABORT = "ask-abort"
    OPEN_GATE = "open-gate"
    AWAIT_DECISION = "await-decision"
    ADMIT = "admit"
    CLOCK = "clock"


@dataclass(frozen=True)
class Record:
    """Append a journal record.  Answer: Done."""

    event: Journaled
    fields: dict[str, Any] = field(default_factory=dict)
    kind = Kind.RECORD


@dataclass(frozen=True)
class Notify:
    """Tell the inventory's webhooks (component, version and run are the driver's to add).  Answer: Done."""

    event: str
    fields: dict[str, Any] = field(default_factory=dict)
    kind = Kind.NOTIFY


@dataclass(frozen=True)
class Say:
    """A line of progress for the operator (`watch`, the terminal).  Answer: Done."""

    what: ProgressKind  # which Listener method says it (engine/progress.py)
    text: str
    host: str | None = None
    kind = Kind.SAY


@dataclass(frozen=True)
class SetState:
    """Set a host's state and detail (shown live, kept for the summary).  Answer: Done."""

    host: str
    state: HostState
    detail: str
    kind = Kind.SET


@dataclass(frozen=True)
class Fail:
    """A host failed (its state, its failure's words, a progress line).  Answer: Done."""

    host: str
    state: HostState
    detail: str
    kind = Kind.FAIL


@dataclass(frozen=True)
class Stage:
    """Stage the release on ``hosts``.  Answer: Staged."""

    hosts: list[str]
    kind = Kind.STAGE


@dataclass(frozen=True)
class Unstage:
    """Remove what this run staged (but on ``failed``, whose state stays).  Answer: Done."""

    hosts: list[str]
    failed: dict[str, str]
    kind = Kind.UNSTAGE


@dataclass(frozen=True)
class RunHosts:
    """Run ``policy.host_program(phase, host)`` for each host, at once, in this order; wait for all.  Answer: Done."""

    phase: int
    hosts: list[str]
    kind = Kind.RUN_HOSTS


@dataclass(frozen=True)
class RunHost:
    """The host's upgrade program (HostActions.upgrade), within ``seconds``.  Answer: HostFinished."""

    host: str
    seconds: float
    kind = Kind.RUN_HOST


@dataclass(frozen=True)
class CheckRound:
    """One round of the host's checks (``lock``: the lock checked first).  Answer: Checked."""

    host: str
    lock: bool
    seconds: float
    kind = Kind.CHECK_ROUND


@dataclass(frozen=True)
class Testinfra:
    """The host's testinfra steps (HostActions.testinfra).  Answer: Tested."""

    host: str
    when: str
    kind = Kind.TESTINFRA


@dataclass(frozen=True)
class RollBack:
    """Run ``policy.rollback_program(host)`` for each host, at once, in this order; wait for all.  Answer: Done."""

    hosts: list[str]
    kind = Kind.ROLL_BACK


@dataclass(frozen=True)
class RollBackHost:
    """Put one host back where it began (HostActions.roll_back, then .rolled_back).  Answer: RolledBack."""

    host: str
    seconds: float
    kind = Kind.ROLL_BACK_HOST


@dataclass(frozen=True)
class WaitUntil:
    """Wait until ``at``, or less if the run stops or is aborted.  Answer: Woke."""

    at: float
    what: str
    host: str | None = None
    kind = Kind.WAIT_UNTIL


@dataclass(frozen=True)
class AwaitChange:
    """Wait until another program of the run has moved (a slot may be free).  Answer: Done."""

    kind = Kind.AWAIT_CHANGE


@dataclass(frozen=True)
class AskAbort:
    """Has an operator aborted the run (`upgrader abort`)?  Answer: AbortAsked."""

    kind = Kind.ASK_ABORT


@dataclass(frozen=True)
class OpenGate:
    """The run waits at ``gate`` from now (None: no longer): promotes sent from now on count.  Answer: Done."""

    gate: str | None
    kind = Kind.OPEN_GATE


@dataclass(frozen=True)
class AwaitDecision:
    """Wait for a decision at ``gate`` until ``until`` (``deadline``: the gate's own end, for the display),
    or less if the run stops.  Answer: GateDecided."""

    gate: str
    until: float
    deadline: float
    kind = Kind.AWAIT_DECISION


@dataclass(frozen=True)
class Admit:
    """Ask the window guard whether a phase of ``estimate`` seconds may start.  Answer: Admitted."""

    phase: int
    estimate: float
    kind = Kind.ADMIT


@dataclass(frozen=True)
class Clock:
    """The driver's time now.  Answer: Done (its ``now``)."""

    kind = Kind.CLOCK


Action = (
    Clock
    | Record
    | Notify
    | Say
    | SetState
    | Fail
    | Stage
    | Unstage
    | RunHosts
    | RunHost
    | CheckRound
    | Testinfra
    | RollBack
    | RollBackHost
    | WaitUntil
    | AwaitChange
    | AskAbort
    | OpenGate
    | AwaitDecision
    | Admit
)

# ------------------------------------------------------------ events


@dataclass(frozen=True)
class Done:
    """The action was carried out (it has nothing to say)."""

    now: float = 0.0


@dataclass(frozen=True)
class Staged:
    failed: dict[str, str]
    now: float = 0.0


@dataclass(frozen=True)
class HostFinished:
    """A host's program ended; ``lost``: its worker died mid-program (Temporal), ``why`` says how."""

    host: str
    ran: Ran | None
    now: float = 0.0
    lost: str = ""


@dataclass(frozen=True)
class Checked:
    """A round of checks ended; ``problem``: why it failed (None: passed).  CheckRoundFailed is a problem."""

    host: str
    problem: str | None
    ops: list[dict[str, Any]] = field(default_factory=list)
    now: float = 0.0


@dataclass(frozen=True)
class Tested:
    host: str
    ok: bool
    now: float = 0.0


@dataclass(frozen=True)
class RolledBack:
    host: str
    back: Back
    raised: bool = False  # the call itself failed: nobody knows where the host is
    now: float = 0.0


@dataclass(frozen=True)
class Woke:
    """A wait ended: at its time, or early (``cut``) by a stop or an abort (``abort``: the one found)."""

    now: float
    cut: bool = False
    abort: Decision | None = None


@dataclass(frozen=True)
class AbortAsked:
    decision: Decision | None
    now: float = 0.0


@dataclass(frozen=True)
class GateDecided:
    """A wait at a gate ended: a decision came (promote, or any abort), the run stopped, or ``until`` passed."""

    decision: Decision | None
    now: float
    stopped: bool = False


@dataclass(frozen=True)
class Admitted:
    reason: str | None  # None: the window admits the phase
    now: float = 0.0


Answer = Done | Staged | HostFinished | Checked | Tested | RolledBack | Woke | AbortAsked | GateDecided | Admitted
