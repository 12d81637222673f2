"""Engine decisions through the real engine and the real agent, on fake hosts (tests/fakes/agent_host.py).

Each host is a directory tree with a stand-in systemctl; the agent is the real one (as built for a host), a
local process per host.  The assertions read what is on the hosts afterwards (the current link, the unit's state, the
host lock and journal), not only what the controller journaled.  SSH and systemd behaviour stay in tests/vm.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.agent_host import FakeHost
from tests.fakes.scenario import FROM, ROOT, TO, UNIT, Scenario
from upgrader.engine import programs
from upgrader.engine.rollback import rollback_hosts
from upgrader.errors import ExitCode, RefusedError
from upgrader.journal import Journal

NY, CH = ["ny-1", "ny-2", "ny-3"], ["ch-1", "ch-2"]


@pytest.fixture
def scenarios(tmp_path: Path) -> Iterator[list[Scenario]]:
    made: list[Scenario] = []
    yield made
    for s in made:
        s.close()


def build(scenarios: list[Scenario], tmp: Path, dcs: dict[str, list[str]] | None = None, **kw: Any) -> Scenario:
    s = Scenario.build(tmp, dcs or {"ny": NY, "ch": CH}, **kw)
    scenarios.append(s)
    return s


def events(entries: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["event"] == name]


def started(entries: list[dict[str, Any]]) -> list[str]:
    return [e["host"] for e in events(entries, "host-begin")]


def final_states(entries: list[dict[str, Any]]) -> dict[str, str]:
    return {h: v["state"] for h, v in events(entries, "run-end")[0]["hosts"].items()}


def assert_known_and_verified(s: Scenario) -> None:
    """The engine's invariant, read on the hosts: every host on FROM or TO with its unit active, no lock left."""
    for name, host in s.hosts.hosts.items():
        assert host.current(ROOT) in (FROM, TO), name
        assert host.state(UNIT) == "active", name
        assert host.lock("app") is None, name


def test_a_clean_run_upgrades_every_host_and_each_step_is_journaled_on_the_host(
    scenarios: list[Scenario], tmp_path: Path
) -> None:
    s = build(scenarios, tmp_path)
    outcome, entries = s.apply()
    assert (outcome.exit_code, outcome.status) == (ExitCode.OK, "succeeded")
    assert set(s.versions().values()) == {TO}
    assert_known_and_verified(s)
    for hp in s.plan.hosts:  # the host journal has a begin and an end for each live step of the plan
        ended = [r["step"] for r in s.hosts[hp.host].journal("app") if r.get("phase") == "end" and r["ok"]]
        # (the bake is one round of checks per bake_interval, driven from the controller: its step repeats)
        assert [st.id for st in hp.steps if st.action != "testinfra"] == list(
            dict.fromkeys(x for x in ended if "/" in str(x))
        )
    assert events(entries, "run-end")[0]["hosts"]["ny-2"]["version"] == TO


@pytest.mark.parametrize(
    "policy, back, kept",
    [
        # ny-1 is the canary (phase 1), ny-2 and ny-3 a wave of two (phase 2, ny-3 fails), ch its own phases.
        ("host", {"ny-3"}, {"ny-1", "ny-2", "ch-1", "ch-2"}),
        ("wave", {"ny-2", "ny-3"}, {"ny-1"}),
        ("run", {"ny-1", "ny-2", "ny-3"}, set()),
    ],
)
def test_each_failure_policy_rolls_back_exactly_its_hosts(
    scenarios: list[Scenario], tmp_path: Path, policy: str, back: set[str], kept: set[str]
) -> None:
    s = build(
        scenarios,
        tmp_path,
        bad={"ny-3"},
        on_failure=policy,
        batch=2,
        max_in_flight_per_datacenter=1,
        max_failures=2 if policy == "host" else 1,
    )
    outcome, entries = s.apply()
    versions = s.versions()
    assert {h for h, v in versions.items() if v == TO} == kept
    rolled = {e["host"] for e in events(entries, "rollback-end") if e["ok"]}
    assert rolled == back
    assert outcome.exit_code == ExitCode.FAILED_ROLLED_BACK and outcome.status == "failed-rolled-back"
    if policy != "host":  # the run stopped: no host of a later phase started
        assert not set(started(entries)) & set(CH)
    assert final_states(entries)["ny-3"] == "rolled-back"
    assert_known_and_verified(s)


def test_hold_leaves_the_failed_host_as_it_is_for_a_human(scenarios: list[Scenario], tmp_path: Path) -> None:
    s = build(scenarios, tmp_path, bad={"ny-2"}, on_failure="hold")
    outcome, entries = s.apply()
    assert (outcome.exit_code, outcome.status) == (ExitCode.ROLLBACK_FAILED, "held")
    held = s.hosts["ny-2"]
    assert held.current(ROOT) == TO  # not rolled back: left for a human to look at
    assert (held.lock("app") or {}).get("run") == "run-1"  # still this run's
    assert not events(entries, "rollback-begin")
    assert not set(started(entries)) & set(CH)
    assert s.hosts["ny-1"].lock("app") is None and s.hosts["ny-1"].current(ROOT) == TO


def test_a_release_that_does_not_start_is_rolled_back(scenarios: list[Scenario], tmp_path: Path) -> None:
    s = build(scenarios, tmp_path, {"ny": ["ny-1", "ny-2"]}, crash={"ny-1"})
    _, entries = s.apply()
    end = events(entries, "host-end")[0]
    assert not end["ok"] and "start failed" in end["ops"][-1]["error"]
    assert s.versions() == {"ny-1": FROM, "ny-2": FROM}  # the canary failed: nothing after it started
    assert started(entries) == ["ny-1"]
    assert_known_and_verified(s)


@pytest.mark.parametrize(
    "budget, bad, expect_started",
    [
        (1, {"ny-2"}, ["ny-1", "ny-2"]),  # spent at the first failure: ny-3 never starts
        (2, {"ny-2"}, ["ny-1", "ny-2", "ny-3", "ch-1", "ch-2"]),  # one failure of two allowed: the run goes on
        (2, {"ny-2", "ny-3"}, ["ny-1", "ny-2", "ny-3"]),  # spent at the second
        ("40%", {"ny-2", "ny-3"}, ["ny-1", "ny-2", "ny-3"]),  # 40% of 5 hosts: 2
    ],
)
def test_the_run_failure_budget_stops_new_hosts_once_spent(
    scenarios: list[Scenario], tmp_path: Path, budget: int | str, bad: set[str], expect_started: list[str]
) -> None:
    s = build(scenarios, tmp_path, bad=bad, on_failure="host", max_failures=budget)
    _, entries = s.apply()
    assert started(entries) == expect_started
    assert {h for h, v in s.versions().items() if v == FROM} == bad | (set(NY + CH) - set(expect_started))
    spent = [e["reason"] for e in events(entries, "halt") if "budget" in e["reason"]]
    assert bool(spent) == (len(expect_started) < 5)
    assert_known_and_verified(s)


def test_a_datacenter_budget_stops_that_datacenter_only(scenarios: list[Scenario], tmp_path: Path) -> None:
    s = build(
        scenarios,
        tmp_path,
        {"ny": NY, "ch": CH},
        bad={"ny-2"},
        on_failure="host",
        max_failures=5,
        max_failures_per_datacenter=1,
    )
    _, entries = s.apply()
    assert "ny-3" not in started(entries)
    assert any("failure budget of ny spent" in e["reason"] for e in events(entries, "halt"))
    assert_known_and_verified(s)


# ---------------------------------------------------------------- rollback targets


def chain_host(h: FakeHost) -> None:
    """A host that came to FROM from 5.0.0 (recorded as FROM's previous release), both still staged."""
    h.install(ROOT, "5.0.0", {"VERSION": "5.0.0\n", "health": "ok\n"}, current=False)
    meta = h.path(f"{ROOT}/releases/{FROM}/.upgrader")
    meta.mkdir(mode=0o700)
    (meta / "previous.json").write_text('{"version": "5.0.0"}')


def test_a_failed_apply_goes_back_to_the_plans_from_version_not_the_recorded_previous(
    scenarios: list[Scenario], tmp_path: Path
) -> None:
    s = build(scenarios, tmp_path, {"ny": ["ny-1"]}, bad={"ny-1"})
    chain_host(s.hosts["ny-1"])
    _, entries = s.apply()
    sent = [o for p in s.hosts["ny-1"].programs for o in p["ops"] if o["op"] == "rollback"]
    assert [o["to"] for o in sent] == [FROM]  # the plan's undo names where the host began
    assert s.hosts["ny-1"].current(ROOT) == FROM
    assert events(entries, "rollback-end")[0]["ops"][-1]["to"] == FROM


def emergency(s: Scenario, to: str | None, hosts: list[str] | None = None) -> dict[str, Any]:
    journal = Journal.create(s.tmp / "state", f"rollback-{len(s.runs)}-{to}")
    s.runs.append(journal)
    pool = s.hosts.pool()
    try:
        return rollback_hosts(
            pool, s.plan.spec, hosts or list(s.hosts.hosts), journal, operator="ops", reason="INC-1", to=to
        )
    finally:
        pool.close()


def test_an_emergency_rollback_takes_the_recorded_previous_or_the_named_release(
    scenarios: list[Scenario], tmp_path: Path
) -> None:
    s = build(scenarios, tmp_path, {"ny": ["ny-1", "ny-2"]})
    for name in ("ny-1", "ny-2"):
        chain_host(s.hosts[name])
    outcome, _ = s.apply()
    assert outcome.status == "succeeded"
    back = emergency(s, None, ["ny-1"])  # default: the release recorded before TO
    assert (back["ny-1"].ok, back["ny-1"].before, back["ny-1"].after) == (True, TO, FROM)
    named = emergency(s, "5.0.0", ["ny-2"])  # two links back along the recorded chain
    assert (named["ny-2"].ok, named["ny-2"].after) == (True, "5.0.0")
    assert s.versions() == {"ny-1": FROM, "ny-2": "5.0.0"}


def test_a_rollback_to_a_release_that_is_not_staged_is_refused_before_stopping_anything(
    scenarios: list[Scenario], tmp_path: Path
) -> None:
    s = build(scenarios, tmp_path, {"ny": ["ny-1"]})
    back = emergency(s, "4.0.0")
    assert not back["ny-1"].ok and "not staged" in back["ny-1"].detail
    host = s.hosts["ny-1"]
    assert (host.current(ROOT), host.state(UNIT)) == (FROM, "active")
    assert not [r for r in host.journal("app") if r.get("op") == "stop"]


# ---------------------------------------------------------------- host locks


def test_a_host_locked_by_another_run_refuses_the_whole_run(scenarios: list[Scenario], tmp_path: Path) -> None:
    s = build(scenarios, tmp_path, {"ny": ["ny-1", "ny-2"]})
    s.hosts["ny-2"].state_dir.joinpath("app").mkdir(parents=True, mode=0o700, exist_ok=True)
    s.hosts["ny-2"].state_dir.joinpath("app", "lock.json").write_text(
        '{"run": "other-run", "operator": "bob", "since": "then"}'
    )
    for d in (s.hosts["ny-2"].state_dir, s.hosts["ny-2"].state_dir / "app"):
        d.chmod(0o700)
    with pytest.raises(RefusedError, match="ny-2: lock: locked by run other-run"):
        s.apply()
    assert s.versions() == {"ny-1": FROM, "ny-2": FROM}
    assert s.hosts["ny-1"].lock("app") is None  # what it took is given back
    engine = s.engine(break_lock="INC-2: run other-run's controller is gone")
    try:
        outcome = engine.run()
    finally:
        engine.pool.close()
    assert outcome.status == "succeeded"
    broke = [r for r in s.hosts["ny-2"].journal("app") if r.get("step") == "lock-break"]
    assert [r["phase"] for r in broke] == ["begin", "end"]


def test_an_emergency_rollback_between_hosts_hands_the_lock_over_and_the_apply_stops(
    scenarios: list[Scenario], tmp_path: Path
) -> None:
    """A second controller rolls everything back while the apply is between hosts: the apply's next
    program finds its lock gone and ends there, touching nothing more."""
    s = build(scenarios, tmp_path, {"ny": NY})
    fired: list[dict[str, Any]] = []

    def rollback_first(host: FakeHost, program: dict[str, Any]) -> None:
        if not fired and any(o["op"] == "stop" for o in program["ops"]):
            fired.append(emergency(s, FROM))  # every host, ny-2 too: its lock is handed over and released

    s.hosts["ny-2"].before_program.append(rollback_first)
    outcome, entries = s.apply()
    assert fired and all(o.ok for o in fired[0].values())
    assert final_states(entries)["ny-2"] == "handed-over"
    assert "ny-3" not in started(entries)
    assert outcome.status == "halted" and "taken over" in outcome.message
    assert s.versions() == {"ny-1": FROM, "ny-2": FROM, "ny-3": FROM}
    apply_ops = {r["op"] for r in s.hosts["ny-2"].journal("app") if r.get("run") == "run-1"}
    assert apply_ops == {"lock", "stage"}  # the apply's program ended at its lock check: nothing stopped


def test_the_lock_records_the_run_operator_plan_and_controller(scenarios: list[Scenario], tmp_path: Path) -> None:
    s = build(scenarios, tmp_path, {"ny": ["ny-1"]}, bad={"ny-1"}, on_failure="hold")
    s.apply()
    lock = s.hosts["ny-1"].lock("app")
    assert lock is not None
    assert (lock["run"], lock["operator"], lock["plan"], lock["kind"]) == (
        "run-1",
        "pytest",
        s.plan.content_hash,
        "apply",
    )
    assert lock["pid_host"] == f"{socket.gethostname()}:{os.getpid()}"  # which controller process to ask


def test_checks_budget_bounds_the_agents_own_retries(scenarios: list[Scenario], tmp_path: Path) -> None:
    """The controller's timeout for a host covers its checks' retries (a failing verify is not a timeout)."""
    s = build(scenarios, tmp_path, {"ny": ["ny-1"]}, bad={"ny-1"})
    _, entries = s.apply()
    failed = events(entries, "host-end")[0]
    assert not failed.get("unreachable") and "verify failed: health" in failed["ops"][-1]["error"]
    assert programs.checks_budget(s.plan.spec) < programs.hop_timeout(s.plan.spec)
