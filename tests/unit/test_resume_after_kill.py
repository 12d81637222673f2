"""Resume after the controller is killed at each step, on fake hosts running the real agent.

The run: ny-1 (canary, baked), ny-2, ny-3 (bad: its verify fails, it is rolled back), failure policy
'host' with room for the failure.  The controller is killed when it sends a given host a program
holding a given operation, before the host gets it or after the host ran it.  Then, for every kill
point: what ``resume.analyze`` reads from the journal must agree with what is on the hosts (a host
it calls done is on the target; any host not on its starting version is done or to be put back; a
version it expects is the one there), and resuming with a new controller ends as the uninterrupted
run would have: ny-1 and ny-2 on the target, ny-3 back on where it began, every unit active, no lock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.agent_host import ControllerKilled
from tests.fakes.scenario import FROM, ROOT, TO, UNIT, Scenario
from upgrader.cli.main import main
from upgrader.engine.resume import analyze
from upgrader.journal import Journal

KILLS = [
    (host, op)
    for host, op in [
        ("ny-1", "facts"),  # the lock-and-facts program
        ("ny-2", "stage"),
        ("ny-1", "stop"),  # the canary's upgrade program
        ("ny-1", "bake"),
        ("ny-2", "stop"),
        ("ny-3", "stop"),  # the failing host's upgrade program
        ("ny-3", "rollback"),  # its rollback
        ("ny-1", "prune"),  # releasing the locks at the end
    ]
]
FINAL = {"ny-1": TO, "ny-2": TO, "ny-3": FROM}


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    s = Scenario.build(tmp_path, {"ny": ["ny-1", "ny-2", "ny-3"]}, bad={"ny-3"}, on_failure="host", max_failures=2)
    yield s
    s.close()


def test_the_run_uninterrupted(scenario: Scenario) -> None:
    outcome, _ = scenario.apply()
    assert outcome.status == "failed-rolled-back" and scenario.versions() == FINAL


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("host, op", KILLS, ids=[f"{h}-{o}" for h, o in KILLS])
def test_resume_reads_the_hosts_right_and_finishes_the_run(scenario: Scenario, host: str, op: str, after: bool) -> None:
    scenario.hosts.kill_controller(host, op, after=after)
    with pytest.raises(ControllerKilled):
        scenario.apply()
    journal = Journal.open(scenario.tmp / "state", "run-1")
    entries = journal.entries()  # the journal's own reader, records validated as resume reads them
    assert not [e for e in entries if e["event"] == "run-end"]
    recovery = analyze(entries, scenario.plan)
    for name, version in scenario.versions().items():
        if name in recovery.done:
            assert version == TO, name
        elif version != FROM:
            assert name in recovery.back, name
        if recovery.expect.get(name) is not None:
            assert version == recovery.expect[name], name
    outcome, after_entries = scenario.apply(recovery, journal=journal)
    assert [e["status"] for e in after_entries if e["event"] == "run-end"] == [outcome.status]
    assert scenario.versions() == FINAL
    for name, fake in scenario.hosts.hosts.items():
        assert (fake.state(UNIT), fake.lock("app")) == ("active", None), name
        assert fake.current(ROOT) == FINAL[name]


@pytest.mark.reliability(
    "resume of a run whose plan.json an upgrader of plan schema 3 wrote (upgrader upgraded mid-run)",
    "resume refuses before any host is contacted, naming the schema and what to do; exit 1",
)
def test_resume_refuses_a_run_planned_by_an_older_schema(
    scenario: Scenario, capsys: pytest.CaptureFixture[str], record_property: Any
) -> None:
    scenario.hosts.kill_controller("ny-2", "stop")
    with pytest.raises(ControllerKilled):
        scenario.apply()
    journal = Journal.open(scenario.tmp / "state", "run-1")
    # schema 3's file: every step holding its operations (what the planner's in-memory plan dumps to)
    data = scenario.plan.model_dump(mode="json", exclude={"hosts": {"__all__": {"undo"}}})
    journal.write_file("plan.json", json.dumps({**data, "schema_version": 3}, indent=2, sort_keys=True))
    before = {name: (fake.journal("app"), fake.lock("app")) for name, fake in scenario.hosts.hosts.items()}
    code = main(["--state-dir", str(scenario.tmp / "state"), "resume", "run-1", "--yes"])
    err = capsys.readouterr().err
    assert code == 1 and "is a schema 3 plan; this upgrader applies schema 4 plans" in err, err
    assert "resume it with the upgrader that started it" in err, err
    assert {name: (fake.journal("app"), fake.lock("app")) for name, fake in scenario.hosts.hosts.items()} == before
    record_property(
        "observed", f"exit {code}, hosts' journals and locks unchanged: {err.strip().splitlines()[-1][:160]}"
    )
