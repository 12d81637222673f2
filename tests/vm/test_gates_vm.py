"""Manual gates on the lab: promote, abort at a gate and mid-wave, timeout, a canary degrading while it waits."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hoststate import assert_on
from upgrader_cli import Upgrader, playbook, write

from lab import config, lxc

pytestmark = pytest.mark.reliability


@pytest.fixture
def upgrader(tmp_path: Path, vm_inventory: Path, reset_hosts: None) -> Upgrader:
    return Upgrader(tmp_path / "state", vm_inventory)


def gated(tmp_path: Path, **canary: object) -> Path:
    return write(tmp_path / "pb.yml", playbook("feedhandler", "3.1.0", rollback="run",
                                                canary={"bake": "1s", "promote": "manual", "promote_timeout": "120s",
                                                        **canary}))


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> int:
    proc.communicate(timeout=timeout)
    return proc.returncode


def waiting(upgrader: Upgrader) -> tuple[str, dict[str, object]]:
    entries = upgrader.wait_for(lambda es: any(e["event"] == "gate-wait" for e in es), timeout=180)
    return upgrader.runs()[-1].name, next(e for e in entries if e["event"] == "gate-wait")


def test_promote_at_the_canary_gate(upgrader, tmp_path, vm_host, vm_hosts, record_property):  # type: ignore[no-untyped-def]
    proc = upgrader.start_apply(gated(tmp_path))
    run, wait = waiting(upgrader)
    assert wait["gate"] == "promote-ny5" and wait["watch"] == ["ny5-1"]
    assert upgrader("promote", run, "--reason", "fills normal").code == 0
    # ch2's canary has a gate of its own: the first promote does not carry the run past it.
    upgrader.wait_for(lambda es: any(e["event"] == "gate-wait" and e["gate"] == "promote-ch2" for e in es))
    assert upgrader("promote", run, "--reason", "ch2 normal too").code == 0
    code = finish(proc)
    assert code == 0
    assert_on(vm_host, vm_hosts, "feedhandler", "3.1.0")
    ends = [e for e in upgrader.journal() if e["event"] == "gate-end"]
    assert ends[0]["outcome"] == "promoted" and ends[0]["decision"]["operator"].startswith("pytest@")
    audit = [json.loads(line)["action"] for line in (upgrader.state / "audit.log").read_text().splitlines()]
    assert "promote" in audit
    record_property("scenario", "manual promote at the canary gate")
    record_property("expected", "the run waits at the gate; `promote` lets it finish; recorded with the operator")
    record_property("observed", f"exit {code}; gates {[(e['gate'], e['outcome']) for e in ends]}; "
                                f"all {len(vm_hosts)} hosts on 3.1.0")


def test_abort_at_the_gate_rolls_back(upgrader, tmp_path, vm_host, vm_hosts, record_property):  # type: ignore[no-untyped-def]
    proc = upgrader.start_apply(gated(tmp_path))
    run, _ = waiting(upgrader)
    assert upgrader("abort", run, "--reason", "INC-7 rejects").code == 0
    code = finish(proc)
    assert code == 3
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    end = upgrader.journal()[-1]
    assert end["status"] == "aborted" and "INC-7 rejects" in end["message"]
    record_property("scenario", "abort at a manual gate")
    record_property("expected", "no further host starts; what the run changed is rolled back; exit 3")
    record_property("observed", f"exit {code}; status {end['status']}; all hosts back on 3.0.0")


def test_a_canary_that_degrades_while_waiting_is_rolled_back(upgrader, tmp_path, vm_host, vm_hosts,
                                                              record_property):  # type: ignore[no-untyped-def]
    proc = upgrader.start_apply(gated(tmp_path))
    waiting(upgrader)
    lxc.attach(config.host("ny5-1").container, "systemctl kill --signal=SIGKILL feedhandler.service")
    code = finish(proc)
    assert code == 3
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    end = next(e for e in upgrader.journal() if e["event"] == "gate-end")
    assert end["outcome"] == "degraded" and "ny5-1" in end["detail"]
    record_property("scenario", "the canary dies while the run waits at its gate")
    record_property("expected", "its checks keep running at the gate: the failure is caught, everything rolled back")
    record_property("observed", f"exit {code}; gate {end['outcome']} after {end['waited']} s ({end['detail'][:80]})")


def test_no_decision_in_time_holds(upgrader, tmp_path, vm_host, record_property):  # type: ignore[no-untyped-def]
    proc = upgrader.start_apply(gated(tmp_path, promote_timeout="4s", on_timeout="hold"))
    code = finish(proc)
    assert code == 4
    entries = upgrader.journal()
    end = next(e for e in entries if e["event"] == "gate-end")
    assert end["outcome"] == "timed-out" and any(e["event"] == "hold" for e in entries)
    record_property("scenario", "nobody decides at a manual gate (on_timeout: hold)")
    record_property("expected", "the run holds after the timeout for a human: exit 4, nothing rolled back")
    record_property("observed", f"exit {code}; gate {end['outcome']} after {end['waited']} s; status "
                                f"{entries[-1]['status']}")


def test_abort_during_a_wave_starts_no_new_host(upgrader, tmp_path, vm_host, vm_hosts,
                                                record_property):  # type: ignore[no-untyped-def]
    pb = write(tmp_path / "pb.yml", playbook("feedhandler", "3.1.0", rollback="run", canary={"hosts": 0},
                                             rollout={"batch": 1, "max_in_flight_per_datacenter": 1}))
    proc = upgrader.start_apply(pb)
    upgrader.wait_for(lambda es: any(e["event"] == "host-end" and e.get("ok") for e in es), timeout=180)
    run = upgrader.runs()[-1].name
    assert upgrader("abort", run, "--reason", "stop now").code == 0
    code = finish(proc)
    entries = upgrader.journal()
    started = [e["host"] for e in entries if e["event"] == "host-begin"]
    assert code == 3 and len(started) < len(vm_hosts)
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    record_property("scenario", "abort during a wave")
    record_property("expected", "no new host starts after the abort; the run's changes are rolled back; exit 3")
    record_property("observed", f"exit {code}; {len(started)} of {len(vm_hosts)} hosts started; all on 3.0.0")
