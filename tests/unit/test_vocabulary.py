"""One vocabulary (issue 15 §2): states, outcomes and event names as enums; journals keep their strings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.scenario import FROM, TO, Scenario
from upgrader.journal import Journal, read_run
from upgrader.models.plan_json import plan_json
from upgrader.reporting.parse import load_run
from upgrader.vocabulary import Event, HostState, RunStatus


def test_journal_lines_hold_the_same_strings_as_before() -> None:
    assert (
        json.dumps({"state": HostState.ROLLED_BACK, "status": RunStatus.FAILED_ROLLED_BACK, "event": Event.RUN_END})
        == '{"state": "rolled-back", "status": "failed-rolled-back", '
        '"event": "run-end"}'
    )


def test_a_misspelt_event_is_refused_where_it_is_written(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path, "run-1")
    journal.record("run-start", kind="apply")  # type: ignore[arg-type]  # a vocabulary name, spelt as a string: fine
    with pytest.raises(ValueError, match="host-ended"):
        journal.record("host-ended", host="h")  # type: ignore[arg-type]
    assert [e["event"] for e in read_run(tmp_path, "run-1")] == ["run-start"]


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Scenario]:
    s = Scenario.build(tmp_path, {"ny": ["ny-1", "ny-2", "ny-3"]}, bad={"ny-2"}, on_failure="host", max_failures=2)
    yield s
    s.close()


def test_a_run_says_only_words_of_the_vocabulary_and_records_versions_as_data(run: Scenario) -> None:
    outcome, entries = run.apply()
    assert {e["event"] for e in entries} <= set(Event)
    end = next(e for e in entries if e["event"] == Event.RUN_END)
    assert end["status"] in set(RunStatus) and outcome.status is RunStatus.FAILED_ROLLED_BACK
    assert {h["state"] for h in end["hosts"].values()} <= set(HostState)
    assert {h: v["version"] for h, v in end["hosts"].items()} == {"ny-1": TO, "ny-2": FROM, "ny-3": TO}
    back = next(e for e in entries if e["event"] == Event.ROLLBACK_END)
    assert (back["host"], back["version"]) == ("ny-2", FROM)


def test_the_report_reads_versions_from_data_not_from_the_detail_text(run: Scenario) -> None:
    run.apply()
    journal = run.runs[0]
    journal.write_file("plan.json", plan_json(run.plan))
    lines = journal.path.read_text().splitlines()
    end = json.loads(lines[-1])
    for info in end["hosts"].values():  # as an older journal: no version, and a detail that says another one
        del info["version"]
        info["detail"] = "on 9.9.9, verified"
    journal.path.write_text("\n".join([*lines[:-1], json.dumps(end, sort_keys=True)]) + "\n")
    record = load_run(run.tmp / "state", journal.run_id)
    versions = {h.host: h.version for h in record.hosts}
    assert versions == {"ny-1": TO, "ny-2": FROM, "ny-3": TO}
