"""Failure budgets (rollout.max_failures, max_failures_per_datacenter): counted for the whole run, never per wave.

The engine runs for real (threads, phases, rollbacks) against the recording agent of test_plan_ops;
failures are injected at a host's verify step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.fleets import inventory, plan, playbook
from tests.unit.test_plan_ops import run_engine
from upgrader.models.plan import Plan
from upgrader.planning import budgets
from upgrader.planning.render import to_markdown, to_text


def test_a_count_is_taken_as_it_is_and_a_percentage_rounds_up_to_at_least_one() -> None:
    assert budgets.allowed(3, 100) == 3
    assert budgets.allowed("10%", 100) == 10
    assert budgets.allowed("10%", 25) == 3  # 2.5 hosts: the third failure spends it
    assert budgets.allowed("10%", 4) == 1
    assert budgets.allowed("100%", 7) == 7


def started(entries: list[dict[str, Any]]) -> list[str]:
    return [e["host"] for e in entries if e["event"] == "host-begin"]


def run(p: Plan, tmp: Path, monkeypatch: pytest.MonkeyPatch, failing: set[str]) -> list[dict[str, Any]]:
    _, entries = run_engine(p, tmp, monkeypatch, fail={(h, "verify") for h in failing})
    return entries


def six_in_three_waves(**rollout: Any) -> Plan:
    pb = playbook(rollout={"batch": 2, **rollout})
    return plan(pb, inventory({"ny": ["h1", "h2", "h3", "h4", "h5", "h6"]}))


def test_failures_in_two_waves_spend_the_budget_together(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One failure in wave 1, one in wave 2: a budget of 2 is spent then, though no wave had 2 (Ansible's trap)."""
    p = six_in_three_waves(max_failures=2)
    assert [ph.hosts for ph in p.phases] == [["h1", "h2"], ["h3", "h4"], ["h5", "h6"]]
    entries = run(p, in_tmp, monkeypatch, failing={"h1", "h3"})
    assert started(entries) == ["h1", "h2", "h3"]  # spent at h3: neither h4 (one at a time) nor wave 3 starts
    halts = [e["reason"] for e in entries if e["event"] == "halt"]
    assert halts == ["failure budget spent: 2 of 2 allowed host failure(s) in the run"]
    ends = {e["host"]: e["ok"] for e in entries if e["event"] == "rollback-end"}
    assert ends == {"h1": True, "h3": True}  # policy host: the failed hosts went back, verified
    end = next(e for e in entries if e["event"] == "run-end")
    assert end["status"] == "failed-rolled-back"


def test_a_budget_not_yet_spent_lets_the_run_go_on(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = run(six_in_three_waves(max_failures=3), in_tmp, monkeypatch, failing={"h1", "h3"})
    assert started(entries) == ["h1", "h2", "h3", "h4", "h5", "h6"]
    assert not [e for e in entries if e["event"] == "halt"]


def test_a_percentage_is_of_the_hosts_in_the_run(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = six_in_three_waves(max_failures="34%")  # 34% of 6 = 2.04: 3 failures allowed
    assert budgets.of_plan(p).run == 3
    entries = run(p, in_tmp, monkeypatch, failing={"h1", "h3", "h5"})
    assert started(entries) == ["h1", "h2", "h3", "h4", "h5"]  # h6 comes after the third failure


def test_a_datacenters_budget_stops_the_whole_run(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pb = playbook(
        rollout={
            "batch": 2,
            "max_failures": 100,
            "max_failures_per_datacenter": "50%",
            "datacenter_order": ["ny", "ch"],
        }
    )
    p = plan(pb, inventory({"ny": ["n1", "n2", "n3", "n4"], "ch": ["c1", "c2"]}))
    assert budgets.of_plan(p).per_datacenter == {"ny": 2, "ch": 1}
    entries = run(p, in_tmp, monkeypatch, failing={"n1", "n3"})
    assert started(entries) == ["n1", "n2", "n3"]  # ny's budget spent at n3, in its second wave: ch never starts
    assert [e["reason"] for e in entries if e["event"] == "halt"] == [
        "failure budget of ny spent: 2 of 2 allowed host failure(s) in that datacenter"
    ]


def test_the_plan_shows_the_budgets() -> None:
    pb = playbook(rollout={"max_failures": "10%", "max_failures_per_datacenter": 1})
    p = plan(pb, inventory({"ny": ["n1", "n2"], "ch": ["c1"]}))
    line = "halt after 1 failure(s) in the run or 1 in ny, 1 in ch (counted across waves)"
    assert line in to_text(p) and line in to_markdown(p)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    hosts=st.integers(1, 9),
    batch=st.integers(1, 4),
    budget=st.integers(1, 5),
    failing=st.sets(st.integers(0, 8)),
    per_dc=st.none() | st.integers(1, 3),
)
def test_no_host_starts_once_a_budget_is_spent(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    hosts: int,
    batch: int,
    budget: int,
    failing: set[int],
    per_dc: int | None,
) -> None:
    """Over random fleets, waves and failures: each host starts only while both budgets hold, across waves."""
    names = [f"h{i}" for i in range(hosts)]
    dcs = {"ny": names[::2], **({"ch": names[1::2]} if hosts > 1 else {})}
    rollout: dict[str, Any] = {"batch": batch, "max_failures": budget, "max_failures_per_datacenter": per_dc}
    p = plan(playbook(rollout=rollout), inventory(dcs))
    dc_of = {h.host: h.datacenter for h in p.hosts}
    entries = run(p, tmp_path_factory.mktemp("run"), monkeypatch, failing={f"h{i}" for i in failing})
    failed: list[str] = []
    for e in entries:
        if e["event"] == "host-begin":
            assert len(failed) < budget
            if per_dc is not None:
                assert all(sum(dc_of[f] == dc for f in failed) < per_dc for dc in dcs)
        elif e["event"] == "host-end" and not e["ok"]:
            failed.append(e["host"])
    spent = len(failed) >= budget or (
        per_dc is not None and any(sum(dc_of[f] == dc for f in failed) >= per_dc for dc in dcs)
    )
    if not spent:  # a budget never spent stops nothing
        assert sorted(started(entries)) == sorted(dc_of)
