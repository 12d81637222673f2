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
