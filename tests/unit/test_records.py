"""upgrader/records.py: one typed record per Event, one parser for every reader, and reporting's dispatch."""

from __future__ import annotations

import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from upgrader import journal, records
from upgrader.commands.targeting import failed_hosts
from upgrader.errors import InputError
from upgrader.records import Abort, HostEnd, Other, RecordError, RunEnd
from upgrader.reporting import parse as reporting
from upgrader.vocabulary import Event

AT = "2026-12-01T10:00:00.000+00:00"


def test_every_event_has_its_record_type() -> None:
    assert set(records.KINDS) == set(Event)
    assert all(kind.EVENT is event for event, kind in records.KINDS.items())


def test_reporting_has_a_handler_entry_for_every_event_and_each_takes_its_record() -> None:
    # A dict, not getattr("on_" + name): an event added or renamed without its entry fails here.
    assert set(reporting.HANDLERS) == set(Event)
    for event, handler in reporting.HANDLERS.items():
        if handler is not None:
            assert typing.get_type_hints(handler)["e"] is records.KINDS[event], event


def test_a_report_reads_a_record_through_its_handler() -> None:
    lines = [
        {"seq": 1, "at": AT, "event": "run-start", "kind": "apply", "component": "app", "hosts": ["h1"]},
        {"seq": 2, "at": AT, "event": "host-begin", "host": "h1"},
        {
            "seq": 3,
            "at": "2026-12-01T10:00:05.000+00:00",
            "event": "host-end",
            "host": "h1",
            "ok": False,
            "ops": [{"op": "verify", "ok": False, "seconds": 2, "error": "health 500"}],
        },
        {"seq": 4, "at": AT, "event": "run-end", "status": "failed-rolled-back", "exit_code": 3, "hosts": {}},
    ]
    run = reporting.parse_run("r", lines)
    assert (run.status, run.exit_code) == ("failed-rolled-back", 3)
    assert [(f.host, f.op, f.error) for f in run.failures] == [("h1", "verify", "health 500")]


def test_the_abort_decision_time_is_read_under_both_names() -> None:
    # The local engine wrote at_decision=; the Temporal workflow once wrote at=, which became the record's time.
    local = records.of_entry({"at": AT, "event": "abort", "operator": "a", "at_decision": "2026-12-01T09:59:00Z"})
    temporal = records.of_entry({"at": "2026-12-01T09:59:00Z", "event": "abort", "operator": "a"})
    assert isinstance(local, Abort) and isinstance(temporal, Abort)
    assert local.at_decision == temporal.at_decision == "2026-12-01T09:59:00Z"


def test_a_newer_event_is_kept_and_skipped_by_readers() -> None:
    entry = {"at": AT, "event": "a-newer-event", "host": "h1", "ok": False}
    record = records.of_entry(entry)
    assert isinstance(record, Other) and record.event == "a-newer-event"
    assert reporting.parse_run("r", [entry]).failures == ()


def test_older_records_take_defaults_for_fields_added_since() -> None:
    record = records.of_entry({"at": "2026-01-01T00:00:00", "event": "host-end", "host": "h"})
    assert isinstance(record, HostEnd)
    assert (record.ok, record.ops, record.unreachable, record.at.tzinfo is not None) == (False, (), False, True)
    end = records.of_entry({"at": AT, "event": "run-end", "hosts": {"h": {"state": "done", "detail": ""}}})
    assert isinstance(end, RunEnd) and not end.hosts["h"].says_version


@pytest.mark.reliability("a journal field of the wrong JSON type (halt's hard: 3)", "the line is refused, named")
def test_a_wrong_type_is_a_clear_refusal(tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text(
        json.dumps({"at": AT, "event": "run-start"}) + "\n" + json.dumps({"at": AT, "event": "halt", "hard": 3}) + "\n"
    )
    with pytest.raises(InputError) as caught:
        list(journal.read(path))
    message = str(caught.value)
    assert f"{path}:2" in message and "'hard' must be true or false" in message
    record_property("observed", message.splitlines()[0])


# ---------------------------------------------------------------- hostile bytes

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELD_NAMES = sorted({f.name for kind in records.KINDS.values() for f in kind.__dataclass_fields__.values()})


@st.composite
def garbled(draw: st.DrawFn) -> bytes:
    """A journal line: random bytes, or a record of a real event with any JSON in its fields."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    entry: dict[str, Any] = {"event": draw(st.sampled_from([*map(str, Event), "x"]) | JSON), "at": AT}
    for name in draw(st.lists(st.sampled_from(FIELD_NAMES), max_size=6)):
        entry[name] = draw(JSON)
    if draw(st.booleans()):
        entry["ops"] = draw(st.lists(st.dictionaries(st.sampled_from(["op", "ok", "seconds", "checks", "from"]), JSON)))
    text = json.dumps(entry)
    cut = draw(st.integers(0, len(text)))
    return (text if draw(st.booleans()) else text[:cut]).encode()


OUTCOMES: dict[str, int] = {}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=garbled())
def test_any_line_is_a_record_a_blank_or_a_clear_error(line: bytes) -> None:
    try:
        record = records.parse(line)
    except RecordError as exc:
        assert exc.message and "\n" not in exc.message
        OUTCOMES["refused"] = OUTCOMES.get("refused", 0) + 1
        return
    OUTCOMES["blank" if record is None else "record"] = OUTCOMES.get("blank" if record is None else "record", 0) + 1
    if record is not None:  # every reader takes what the parser lets through
        reporting.parse_run("r", [record])
        reporting.describe_note(record)


@pytest.mark.reliability(
    "journal lines of random bytes and of records with any JSON in any field",
    "each is a typed record, a skipped blank, or one line naming the problem; never another exception",
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(garbled(), min_size=1, max_size=5))
def test_a_garbled_journal_reads_as_records_or_one_error_naming_its_line(
    lines: list[bytes], tmp_path_factory: pytest.TempPathFactory, record_property: Callable[[str, object], None]
) -> None:
    path = tmp_path_factory.mktemp("garbled") / "journal.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")
    try:
        found = list(journal.read(path))
    except InputError as exc:
        assert len(exc.problems) == 1 and str(exc).startswith(f"{path}:")
        OUTCOMES["journal refused"] = OUTCOMES.get("journal refused", 0) + 1
    else:
        failed_hosts(found)  # --limit failed:RUN
        reporting.parse_run("r", found)
        OUTCOMES["journal read"] = OUTCOMES.get("journal read", 0) + 1
    record_property("observed", ", ".join(f"{k}: {v}" for k, v in sorted(OUTCOMES.items())) + "; no other exception")
