"""A handover is a field of an agent result, and a busy host a typed error: no match on op names or words."""

from __future__ import annotations

import re
from pathlib import Path

from upgrader import records
from upgrader.engine.remote import AgentResult, OpResult
from upgrader.errors import HostBusy, RefusedError
from upgrader.records import RollbackEnd
from upgrader.transport.base import Result

ROOT = Path(__file__).resolve().parents[2] / "upgrader"


def _result(*ops: OpResult) -> AgentResult:
    return AgentResult("h1", Result("h1", ("python3",), 1), list(ops), expected=len(ops))


def _op(name: str, ok: bool, **data: object) -> OpResult:
    return OpResult(name, None, ok, {"op": name, "ok": ok, **data})


def test_a_lost_lock_is_the_results_handed_over() -> None:
    taken = _result(_op("lock", False, error="this run no longer holds the lock: taken over", handed_over=True))
    assert taken.handed_over == "this run no longer holds the lock: taken over" and not taken.busy
    gone = _result(_op("lock", False, error="this run no longer holds the lock: lock is gone", handed_over=False))
    assert gone.handed_over is not None  # no longer this run's either way: touch nothing more
    failed_check = _result(_op("lock", True), _op("bake", False, error="health 500"))
    assert failed_check.handed_over is None and not failed_check.busy


def test_a_busy_host_is_said_by_the_agents_field_not_its_words() -> None:
    busy = _result(_op("lock", False, error="locked by run r-1: something else entirely", busy=True))
    assert busy.busy and busy.handed_over is not None
    worded = _result(_op("lock", False, error="another upgrader program is running for app on this host"))
    assert not worded.busy  # the words alone say nothing
    record = records.of_entry(
        {"at": "2026-12-01T00:00:00+00:00", "event": "rollback-end", "host": "h1", "ok": True, "busy": True}
    )
    assert isinstance(record, RollbackEnd) and record.busy
    error = HostBusy("h1", "locked by run r-1")
    assert isinstance(error, RefusedError) and error.reference == "host-busy" and error.host == "h1"


def test_no_engine_or_command_code_tests_an_op_name_or_words_for_a_handover() -> None:
    pattern = re.compile(r'failed\.op [!=]= "lock"|another upgrader program is running|"handed over: "')
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("engine", "commands", "temporal")
        for path in sorted((ROOT / folder).glob("*.py"))
        if path.name != "remote.py"  # the result's own property: the one place that reads the agent's answer
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []


def test_a_handover_found_by_a_temporal_check_round_reaches_the_policy_as_one() -> None:
    # The check activity's answer crosses a Temporal payload: a HandedOver (a str subclass) arrives as a
    # plain str, so the activity says it as a field and the workflow types it again for the policy.
    from temporalio.converter import DataConverter

    from upgrader.engine.host_actions import HandedOver
    from upgrader.temporal.messages import Done
    from upgrader.temporal.workflow import checked_problem

    converter = DataConverter.default.payload_converter

    def across(done: Done) -> Done:
        decoded = converter.from_payloads(converter.to_payloads([done]), [Done])[0]
        assert isinstance(decoded, Done)
        return decoded

    taken = HandedOver("this run no longer holds the lock: taken over")
    sent = across(Done(ok=False, problem=taken, handed_over=True))
    assert type(sent.problem) is str  # the subclass is lost on the way
    assert isinstance(checked_problem(sent), HandedOver) and checked_problem(sent) == taken
    failed = across(Done(ok=False, problem="health 500"))
    assert not isinstance(checked_problem(failed), HandedOver) and checked_problem(failed) == "health 500"
    assert checked_problem(across(Done())) is None
