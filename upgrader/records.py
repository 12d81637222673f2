"""Journal records, typed: one frozen dataclass per ``Event``, and the one parser every reader uses.

A journal line is outside input (a file on disk, edited or torn), so ``parse`` turns any bytes into a
``Record`` or a ``RecordError`` saying what is wrong, never another exception; engine/journal.read adds
the file and line.  Resume, reporting, ``--limit failed:``, admission, show, status and runs read these
records, never the dicts: a field a reader uses has one name and one type here.

It sits beside the journal, below both its writer (the engine) and its readers (reporting, commands),
so neither needs the other to know what a record holds.

Older journals stay readable: a field added since is absent and takes its default, and a field whose
name drifted is read as it was written then (an abort's decision time was ``at=`` in the Temporal
workflow's records, which made it the record's own time, and ``at_decision=`` in the local engine's).
An event name this version does not know is kept as an ``Other`` record, which readers skip.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, Union

from upgrader.loading import bounded_read
from upgrader.loading.records import entry_problem
from upgrader.vocabulary import Event

R = TypeVar("R", bound="Record")


class RecordError(ValueError):
    """One line is not a record this version can read: ``message`` says why, ``column`` where (1-based)."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.message, self.column = message, column


# ---------------------------------------------------------------- parts of records


@dataclass(frozen=True)
class CheckResult:
    """One canary check's verdict inside an op's ``checks``."""

    check: str = "?"
    ok: bool = False
    reason: str | None = None
    attempts: int = 1


@dataclass(frozen=True)
class Op:
    """One operation's answer from the agent (``ops`` of host-end, bake-end, rollback-end)."""

    op: str = "?"
    ok: bool = False
    seconds: float = 0.0
    error: str | None = None
    step: str | None = None
    checks: tuple[CheckResult, ...] = ()
    steps: tuple[str, ...] = ()
    stdout: str | None = None
    stderr: str | None = None
    current: str | None = None
    to: str | None = None
    from_: str | None = field(default=None, metadata={"key": "from"})
    fields: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class HostAtEnd:
    """One host in a run-end: its state, its line, and its version when the record says one."""

    state: str = "?"
    detail: str = ""
    version: str | None = None
    says_version: bool = False  # run-end from before versions were recorded: the plan's data decides


# ---------------------------------------------------------------- records


@dataclass(frozen=True, kw_only=True)
class Record:
    """What every record has: its sequence number, its time (aware), its event, and the line as written."""

    EVENT: ClassVar[Event | None] = None
    seq: int | None = None
    at: dt.datetime
    event: str  # an Event for every class but Other
    fields: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)  # show --format json, notes


@dataclass(frozen=True, kw_only=True)
class HostRecord(Record):
    host: str


@dataclass(frozen=True, kw_only=True)
class HostResultRecord(HostRecord):
    """A host program's end: ``ok``, the agent's answers, or the error that stopped it."""

    ok: bool = False
    ops: tuple[Op, ...] = ()
    error: str | None = None
    stderr: str = ""

    @property
    def host_seconds(self) -> float:
        return sum(o.seconds for o in self.ops)


@dataclass(frozen=True, kw_only=True)
class RunStart(Record):
    EVENT = Event.RUN_START
    kind: str = "?"
    component: str = "?"
    operator: str = "?"
    version: str | None = None  # an apply's target
    to: str | None = None  # a rollback's target
    reason: str | None = None
    argv: tuple[str, ...] = ()
    plan_hash: str | None = None
    break_lock: str | None = None
    hosts: tuple[str, ...] = ()
    engine: str | None = None  # "temporal": its workflow carries it on (None: the local engine)
    inventory_path: str | None = None
    artifacts: str | None = None


@dataclass(frozen=True, kw_only=True)
class RunEnd(Record):
    EVENT = Event.RUN_END
    status: str = "?"
    exit_code: int | None = None
    message: str = ""
    hosts: Mapping[str, HostAtEnd] = field(default_factory=dict)
    resumable: bool = False


@dataclass(frozen=True, kw_only=True)
class Resume(Record):
    EVENT = Event.RESUME
    operator: str = "?"
    done: tuple[str, ...] = ()
    back: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Recover(Record):
    EVENT = Event.RECOVER
    hosts: tuple[str, ...] = ()
    failing: bool = False


@dataclass(frozen=True, kw_only=True)
class ArtifactsChecked(Record):
    EVENT = Event.ARTIFACTS_CHECKED


@dataclass(frozen=True, kw_only=True)
class ArtifactRefused(Record):
    EVENT = Event.ARTIFACT_REFUSED
    version: str | None = None
    path: str = "?"
    sha256: str = "?"
    expected: str = "?"


@dataclass(frozen=True, kw_only=True)
class LockBreak(Record):
    EVENT = Event.LOCK_BREAK
    reason: str | None = None
    operator: str = "?"


@dataclass(frozen=True, kw_only=True)
class Locks(Record):
    EVENT = Event.LOCKS
    held: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class LocksReleased(Record):
    EVENT = Event.LOCKS_RELEASED
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class StageBegin(Record):
    EVENT = Event.STAGE_BEGIN
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class StageHost(HostRecord):
    EVENT = Event.STAGE_HOST
    steps: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class StageEnd(Record):
    EVENT = Event.STAGE_END
    failed: Mapping[str, str | None] = field(default_factory=dict)  # host -> its staging error


@dataclass(frozen=True, kw_only=True)
class PhaseBegin(Record):
    EVENT = Event.PHASE_BEGIN
    phase: int | None = None
    kind: str = ""
    datacenter: str | None = None
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class PhaseEnd(Record):
    EVENT = Event.PHASE_END
    phase: int | None = None
    failed: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class HostBegin(HostRecord):
    EVENT = Event.HOST_BEGIN
    steps: tuple[str | None, ...] = ()
    path: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class HostEnd(HostResultRecord):
    EVENT = Event.HOST_END
    unreachable: bool = False


@dataclass(frozen=True, kw_only=True)
class HostWithheld(HostRecord):
    EVENT = Event.HOST_WITHHELD
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class BakeBegin(HostRecord):
    EVENT = Event.BAKE_BEGIN
    seconds: float = 0.0
    steps: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class BakeEnd(HostResultRecord):
    EVENT = Event.BAKE_END
    cut: bool = False  # a stop cut the bake short: the host is on the target, unjudged
    handed_over: bool = False


@dataclass(frozen=True, kw_only=True)
class Testinfra(Record):
    EVENT = Event.TESTINFRA
    host: str | None = None
    ok: bool | None = None


@dataclass(frozen=True, kw_only=True)
class GateWait(Record):
    EVENT = Event.GATE_WAIT
    gate: str | None = None
    kind: str = ""


@dataclass(frozen=True, kw_only=True)
class GateEnd(Record):
    EVENT = Event.GATE_END
    gate: str | None = None
    outcome: str = "?"
    waited: float | None = None
    decision: Mapping[str, Any] | None = None
    detail: str | None = None


@dataclass(frozen=True, kw_only=True)
class RollbackBegin(Record):
    EVENT = Event.ROLLBACK_BEGIN
    hosts: tuple[str, ...] = ()
    failing: bool = True  # false: canaries put back after a stop, not a failure


@dataclass(frozen=True, kw_only=True)
class RollbackEnd(HostResultRecord):
    EVENT = Event.ROLLBACK_END
    handed_over: bool = False
    busy: bool = False  # handed over because another program still ran there: the same rollback may be retried
    version: str | None = None


@dataclass(frozen=True, kw_only=True)
class RollbackWithheld(Record):
    EVENT = Event.ROLLBACK_WITHHELD
    host: str | None = None
    hosts: tuple[str, ...] = ()
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class Halt(Record):
    EVENT = Event.HALT
    reason: str = "halted"
    signal: str | None = None
    hard: bool = False
    resumable: bool = False


@dataclass(frozen=True, kw_only=True)
class Hold(Record):
    EVENT = Event.HOLD
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Abort(Record):
    EVENT = Event.ABORT
    operator: str = "?"
    reason: str | None = None
    at_decision: str | None = None  # when the operator decided; older Temporal records: the record's own time
    keep: bool = False


@dataclass(frozen=True, kw_only=True)
class AbortKept(Record):
    EVENT = Event.ABORT_KEPT
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class AbortedRuns(Record):
    EVENT = Event.ABORTED_RUNS
    runs: tuple[str, ...] = ()
    reason: str | None = None
    operator: str = "?"


@dataclass(frozen=True, kw_only=True)
class Other(Record):
    """A record whose event this version does not know (a newer controller's): shown, otherwise skipped."""


KINDS: dict[Event, type[Record]] = {
    c.EVENT: c
    for c in Record.__subclasses__() + HostRecord.__subclasses__() + HostResultRecord.__subclasses__()
    if c.EVENT is not None
}


# ---------------------------------------------------------------- the parser


def parse(line: bytes | str) -> Record | None:
    """One journal line as its record; None for a blank line; RecordError for anything else."""
    if isinstance(line, bytes):
        if len(line) > bounded_read.MAX_JOURNAL_LINE:
            raise RecordError(f"line longer than {bounded_read.MAX_JOURNAL_LINE // bounded_read.MiB} MiB")
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordError(f"not UTF-8 text (byte 0x{line[exc.start]:02x})", exc.start + 1) from None
    text = line.strip()
    if not text:
        return None
    try:
        entry = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise RecordError(f"not JSON: {exc.msg}", exc.colno) from None
    except RecursionError:
        raise RecordError("nested too deeply") from None
    except ValueError as exc:  # NaN, or an integer of thousands of digits
        raise RecordError("not JSON: " + " ".join(str(exc).split())[:100]) from None
    if not isinstance(entry, dict):
        raise RecordError("not an object")
    return of_entry(entry)


def of_entry(entry: Mapping[str, Any]) -> Record:
    """A decoded record (a dict from JSON, or one an engine just wrote) as its typed record."""
    problem = entry_problem(entry if isinstance(entry, dict) else dict(entry))
    if problem:
        raise RecordError(problem)
    name = entry["event"]
    try:
        event: Event | None = Event(name)
    except ValueError:
        event = None
    cls = KINDS[event] if event is not None else Other
    at = _aware(entry["at"])
    values: dict[str, Any] = {"seq": entry.get("seq"), "at": at, "event": event or name, "fields": entry}
    values.update(_values(cls, entry, ""))
    if event is Event.ABORT and "at_decision" not in entry:
        values["at_decision"] = entry["at"]  # the Temporal workflow's older abort: its time was the decision's
    try:
        return cls(**values)
    except TypeError as exc:  # a required field (a host record's host) is missing
        raise RecordError(f"'{event}' has no {str(exc).rsplit(' ', 1)[-1]}") from None


def typed(entries: Iterable[Record | Mapping[str, Any]]) -> list[Record]:
    """Records as they are, and decoded dicts (a test's, an activity's) through the same parser."""
    return [e if isinstance(e, Record) else of_entry(e) for e in entries]


def of_kind(entries: Iterable[Record], kind: type[R]) -> list[R]:
    return [e for e in entries if isinstance(e, kind)]


def host_of(record: Record) -> str | None:
    """The one host a record is about (host-end, testinfra, a withheld rollback...), or None."""
    host = getattr(record, "host", None)
    return host if isinstance(host, str) else None


# ---------------------------------------------------------------- field conversion

_SKIPPED = {"seq", "at", "event", "fields"}
Convert = Callable[[Any, str], Any]  # (JSON value, its key for messages) -> the field's value, or RecordError
_NAMES = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}
_PLANS: dict[type, dict[str, tuple[str, Convert, bool]]] = {}
_CONVERTERS: dict[Any, Convert] = {}


def _plan(cls: type) -> dict[str, tuple[str, Convert, bool]]:
    """A class's fields by JSON key: (field name, converter, may be null), worked out once per class:
    reading a journal of 20,000 records converts 100,000 fields, and typing's introspection is slow."""
    if cls not in _PLANS:
        hints = typing.get_type_hints(cls)
        _PLANS[cls] = {
            f.metadata.get("key", f.name): (f.name, _converter(hints[f.name]), _optional(hints[f.name]))
            for f in dataclasses.fields(cls)
            if f.name not in _SKIPPED
        }
    return _PLANS[cls]


def _values(cls: type, value: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The fields of ``cls`` that ``value`` holds, converted; an absent or null one keeps its default."""
    plan = _plan(cls)
    out: dict[str, Any] = {}
    for key, item in value.items():  # a record's own keys: fewer than its class's fields, mostly
        found = plan.get(key)
        if found is not None and (item is not None or found[2]):
            out[found[0]] = found[1](item, prefix + key)
    return out


def _optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType) and type(None) in typing.get_args(hint)


def _converter(hint: Any) -> Convert:
    if hint not in _CONVERTERS:
        _CONVERTERS[hint] = _compile(hint)
    return _CONVERTERS[hint]


def _compile(hint: Any) -> Convert:
    """The converter for one field type (JSON's types only: no coercion but int to float)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return _union([_converter(a) for a in args if a is not type(None)], type(None) in args, args)
    if hint is float:
        return _number
    if hint in (str, int, bool):
        return _scalar(hint)
    if origin is tuple:
        return _sequence(_converter(args[0]))
    if origin is Mapping or hint is Mapping:
        return _mapping(_converter(args[1]) if args and args[1] is not Any else None)
    if hint is Any:
        return lambda value, key: value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _part(hint)
    raise TypeError(f"records: no conversion for {hint!r}")  # a programming error in this module


def _union(options: list[Convert], nullable: bool, args: tuple[Any, ...]) -> Convert:
    wanted = " or ".join(_NAMES.get(a, "null") for a in args)

    def convert(value: Any, key: str) -> Any:
        if value is None and nullable:
            return None
        for option in options:
            try:
                return option(value, key)
            except RecordError:
                continue
        raise RecordError(f"'{key}' must be {wanted}")

    return convert


def _number(value: Any, key: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise RecordError(f"'{key}' must be a number, not {type(value).__name__}")


def _scalar(kind: type) -> Convert:
    def convert(value: Any, key: str) -> Any:
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
            return value
        raise RecordError(f"'{key}' must be {_NAMES[kind]}, not {type(value).__name__}")

    return convert


def _sequence(item: Convert) -> Convert:
    def convert(value: Any, key: str) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):  # a tuple: a record an engine just wrote, not yet JSON
            raise RecordError(f"'{key}' must be a list, not {type(value).__name__}")
        return tuple(item(v, key) for v in value)

    return convert


def _mapping(item: Convert | None) -> Convert:
    def convert(value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise RecordError(f"'{key}' must be an object, not {type(value).__name__}")
        return {str(k): v if item is None else item(v, f"{key}.{k}") for k, v in value.items()}

    return convert


def _part(cls: type) -> Convert:
    def convert(value: Any, key: str) -> Any:
        if not isinstance(value, dict):
            raise RecordError(f"'{key}' must be an object, not {type(value).__name__}")
        values = _values(cls, value, key + ".")
        if cls is Op:
            values["fields"] = value
        elif cls is HostAtEnd:
            values["says_version"] = "version" in value
        return cls(**values)

    return convert


def _aware(text: str) -> dt.datetime:
    """A record's time: aware (an older or hand-written one without an offset was written in UTC)."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise RecordError(f"'at' {text[:40]!r} is not an ISO 8601 time") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _no_constant(word: str) -> None:
    raise ValueError(f"{word} is not a number JSON allows")
