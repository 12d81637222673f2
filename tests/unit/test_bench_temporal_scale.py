"""bench/temporal_scale.py's measuring functions, without a server: what it reads from histories and logs.

A bench that measures nothing reports every budget kept: each reader here is checked against input
whose answer is known (a payload nested in a map or a list, a log line in the server's and the SDK's
own formats).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench() -> ModuleType:
    """The bench as a module (loaded from its file: bench/ is scripts, not a package)."""
    if "temporal_scale" not in sys.modules:
        sys.path.insert(0, str(BENCH))  # its `from benchlib import ...`
        spec = importlib.util.spec_from_file_location("temporal_scale", BENCH / "temporal_scale.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["temporal_scale"] = module
        spec.loader.exec_module(module)
    return sys.modules["temporal_scale"]


def payload(size: int) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=b"x" * size)


@given(
    inputs=st.lists(st.integers(0, 5000), max_size=4),
    headers=st.dictionaries(st.text("abc", min_size=1, max_size=3), st.integers(0, 5000), max_size=3),
)
def test_the_largest_payload_is_found_in_lists_and_maps(inputs: list[int], headers: dict[str, int]) -> None:
    event = HistoryEvent(event_id=5, event_type=EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    attributes = event.activity_task_scheduled_event_attributes
    attributes.activity_type.name = "record"
    for size in inputs:
        attributes.input.payloads.append(payload(size))
    for key, size in headers.items():
        attributes.header.fields[key].CopyFrom(payload(size))
    found: list[tuple[int, str]] = []
    bench().largest_payload(event, found)
    expected = [payload(s).ByteSize() for s in [*inputs, *headers.values()]]
    assert sorted(size for size, _ in found) == sorted(expected)
    assert bench()._event_name(event) == "ACTIVITY_TASK_SCHEDULED record"


def test_server_warnings_are_counted_by_message(tmp_path: Path) -> None:
    log = tmp_path / "temporal.log"
    log.write_text(
        'time=2026-12-05T04:29:44.535 level=WARN msg="Blob data size exceeds the warning limit." wf-id=a\n'
        'time=2026-12-05T04:30:57.521 level=WARN msg="history count exceeds warn limit." wf-id=a\n'
        'time=2026-12-05T04:30:58.023 level=WARN msg="history count exceeds warn limit." wf-id=b\n'
        'time=2026-12-05T04:30:59.000 level=ERROR msg="quoted \\"name\\" in it" x=1\n'
        "Temporal Server:      localhost:57973\n"
        'time=2026-12-05T04:31:00.000 level=INFO msg="started" x=1\n'
    )
    assert bench().server_warnings(log) == {
        "history count exceeds warn limit.": 2,
        "Blob data size exceeds the warning limit.": 1,
        'quoted \\"name\\" in it': 1,
    }


def test_the_sdk_s_slow_tasks_deadlocks_and_evictions_are_counted(tmp_path: Path) -> None:
    log = tmp_path / "control.log"
    esc = "\x1b"
    log.write_text(
        f"{esc}[2m2026-12-05T04:38:48Z{esc}[0m {esc}[33m WARN{esc}[0m [TMPRL1104] run:13545:1 Workflow task duration "
        f"exceeded 5 seconds. {esc}[3mworkflow_type{esc}[0m{esc}[2m={esc}[0mupgrade {esc}[3mworkflow_task_duration"
        f"{esc}[0m{esc}[2m={esc}[0m10846 {esc}[3mworkflow_history_size{esc}[0m{esc}[2m={esc}[0m9136191\n"
        "[TMPRL1104] run:13656:2 Workflow task duration exceeded 5 seconds. workflow_task_duration=13829 x=1\n"
        "failure: [TMPRL1101] Potential deadlock detected: workflow didn't yield within 2 second(s).\n"
        "upgrader: error: Failed running eviction job for run ID r, continually retrying eviction.\n"
    )
    assert bench().slow_tasks(log) == {"over_5s": 2, "longest_ms": 13829, "deadlocks": 1, "evictions_failed": 1}
    assert bench().slow_tasks(tmp_path / "absent.log") == {
        "over_5s": 0,
        "longest_ms": 0,
        "deadlocks": 0,
        "evictions_failed": 0,
    }


def test_a_budget_is_kept_only_at_or_under_it_and_unmeasured_is_not_kept() -> None:
    from upgrader.temporal import limits

    row: dict[str, Any] = {
        "histories": {
            "largest_payload": {"bytes": limits.PAYLOAD_BUDGET + 1},
            "history_events_max": limits.HISTORY_EVENTS_BUDGET,
            "history_bytes_max": 1,
        },
        "pending_activities_peak": 3,
        "pending_children_peak": limits.PENDING_BUDGET + 1,
        "progress_query_max_bytes": 0,  # never answered
    }
    kept = {name: verdict["kept"] for name, verdict in bench().limits_kept(row).items()}
    assert kept == {
        "PAYLOAD_BUDGET": False,
        "HISTORY_EVENTS_BUDGET": True,
        "HISTORY_BYTES_BUDGET": True,
        "PENDING_BUDGET": False,
        "QUERY_BUDGET": None,
    }
