"""The window guard on real runs: refused in market hours, and no phase started that cannot finish in time."""

from __future__ import annotations

import json

import pytest

from tests.vm.hoststate import component, lock
from tests.vm.upgrader_cli import SATURDAY, playbook, write


def test_apply_is_refused_with_the_market_open(upgrader, vm_host, vm_hosts, tmp_path):  # type: ignore[no-untyped-def]
    pb = write(tmp_path / "pb.yml", playbook("feedhandler", "3.1.0", windows={"maintenance": []}))
    run = upgrader(
        "apply",
        str(pb),
        "-i",
        str(upgrader.inventory),
        "--yes",
        "--now",
        "2026-11-24T10:05:00-05:00",
        "--reason",
        "lab: market hours, simulated",
    )
    assert run.code == 1 and "XNYS" in run.stderr and "next allowed" in run.stderr, run.output
    assert not upgrader.runs()
    assert {component(vm_host(h), "feedhandler").current for h in vm_hosts} == {"3.0.0"}


def test_a_run_stops_admitting_phases_when_its_window_ends(upgrader, vm_host, vm_hosts, tmp_path):  # type: ignore[no-untyped-def]
    # Sunday 17:59 New York: the weekend window closes at 18:00. The ny5 canary (estimated ~45 s with its
    # 20 s bake) fits; by the time ch2's canary is due, it no longer does.
    pb = write(tmp_path / "pb.yml", playbook("feedhandler", "3.1.0", canary={"bake": "20s"}))
    run = upgrader(
        "apply",
        str(pb),
        "-i",
        str(upgrader.inventory),
        "--yes",
        "--now",
        "2026-11-29T17:59:00-05:00",
        "--reason",
        "lab: the end of the weekend window, simulated",
        "--log-format",
        "plain",
    )
    # Halted part-way with the canary on the target, verified: exit 5, resumable once a window opens.
    assert run.code == 5 and "upgrader resume" in run.output, run.output
    events = upgrader.journal()
    halt = next(e for e in events if e["event"] == "halt")
    assert "window closes" in halt["reason"], halt
    started = [e["host"] for e in events if e["event"] == "host-begin"]
    assert started[0] == "ny5-1" and "ch2-1" not in started
    for h in vm_hosts:
        state = component(vm_host(h), "feedhandler")
        assert state.active and state.current == ("3.1.0" if h in started else "3.0.0"), (h, state)
        assert lock(vm_host(h), "feedhandler") is None
    end = events[-1]
    assert end["event"] == "run-end" and end["hosts"]["ch2-2"]["version"] == "3.0.0"


@pytest.mark.reliability(
    "apply --now <a Saturday> on the lab, without and with --reason",
    "without: exit 1 before any host is contacted, no run, hosts unchanged; with: the run "
    "goes ahead and the audit log and the run's journal record the override and its reason",
)
def test_a_simulated_time_is_a_guard_override_on_real_hosts(
    upgrader,
    vm_host,
    vm_hosts,
    tmp_path,  # type: ignore[no-untyped-def]
    record_property,
):
    pb = write(tmp_path / "pb.yml", playbook("feedhandler", "3.1.0", canary={"bake": "1s"}))
    refused = upgrader("apply", str(pb), "-i", str(upgrader.inventory), "--yes", "--now", SATURDAY)
    assert refused.code == 1 and "error[refused]: --now overrides the window guard" in refused.stderr, refused.output
    assert not upgrader.runs() and not (upgrader.state / "audit.log").exists()
    assert {component(vm_host(h), "feedhandler").current for h in vm_hosts} == {"3.0.0"}
    run = upgrader.apply(pb)  # --now SATURDAY --reason "lab: the weekend window, simulated"
    assert run.code == 0, run.output
    [entry] = [json.loads(line) for line in (upgrader.state / "audit.log").read_text().splitlines()]
    assert (entry["action"], entry["reason"]) == ("guard-bypassed", "lab: the weekend window, simulated")
    start = upgrader.journal()[0]
    assert start["break_glass"] is True and start["guard"]["simulated_now"].startswith("2026-11-28T02:00")
    record_property(
        "observed",
        f"without --reason: exit {refused.code}, {len(upgrader.runs()) - 1} run(s) before "
        f"the second apply; with: exit {run.code}, audit {entry['action']} by {entry['operator']}, "
        f"real-time blockers {[b['what'] for b in entry['guard']['blockers']]}",
    )
