"""The `testinfra` check kind on the lab: the shipped example module, passing and failing, through the jump hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

from upgrader.engine.endpoints import endpoints
from upgrader.engine.testinfra_check import run_module, ssh_config
from upgrader.loading.inputs import load_inventory

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "playbooks" / "verify" / "ordergw.py"


@pytest.fixture
def endpoint(vm_inventory: Path, reset_hosts: None):  # type: ignore[no-untyped-def]
    inventory = load_inventory(vm_inventory)
    return endpoints(inventory.model, inventory.path)["ny5-1"]


def test_passes_on_a_healthy_host_through_its_jump_host(endpoint) -> None:  # type: ignore[no-untyped-def]
    assert endpoint.jump is not None  # the lab's datacenter hosts are reachable only through it
    result = run_module(MODULE, endpoint, component="ordergw", version="5.0.0", timeout=120)
    assert result.ok, result.to_dict()
    assert (result.passed, result.failed) == (4, 0)


@pytest.mark.reliability(
    "a testinfra verification module fails on a host",
    "the check fails naming each failed test and its assertion message",
)
def test_failures_name_the_test_and_the_assertion(endpoint, record_property) -> None:  # type: ignore[no-untyped-def]
    result = run_module(MODULE, endpoint, component="ordergw", version="5.2.0", timeout=120)
    assert not result.ok and result.error is None
    names = {f.test for f in result.failures}
    assert "test_current_points_at_the_release" in names and "test_it_listens_and_reports_this_version" in names
    current = next(f for f in result.failures if f.test == "test_current_points_at_the_release")
    assert "current -> /opt/ordergw/releases/5.0.0" in current.message
    assert result.passed == 1  # the service runs; only what is about the version fails
    record_property("observed", f"{result.failed} failed ({', '.join(sorted(names))}); reason: {result.reason}")


def test_a_jump_host_key_that_is_not_known_is_refused(endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Strict checking on the jump hop too: with only the target's key known, nothing runs."""
    from dataclasses import replace

    known = tmp_path / "known_hosts"
    lines = Path(endpoint.known_hosts).read_text().splitlines()
    known.write_text("\n".join(line for line in lines if not line.startswith(endpoint.jump.address + " ")) + "\n")
    stripped = replace(endpoint, known_hosts=str(known), jump=replace(endpoint.jump, known_hosts=str(known)))
    assert "StrictHostKeyChecking yes" in ssh_config(stripped, 5, tmp_path / "c")
    result = run_module(MODULE, stripped, component="ordergw", version="5.0.0", timeout=120)
    assert not result.ok and result.passed == 0


def test_a_hanging_module_is_cut_off(endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    slow = tmp_path / "slow.py"
    slow.write_text("def test_sleeps(host):\n    host.run('sleep 60')\n")
    result = run_module(slow, endpoint, component="ordergw", version="5.0.0", timeout=5)
    assert not result.ok and "did not finish within 5s" in (result.error or "")
    assert result.seconds < 15


def _playbook_with_module(tmp_path: Path, module_text: str | None = None) -> Path:
    import shutil

    from tests.vm.upgrader_cli import playbook, write

    verify = tmp_path / "verify"
    verify.mkdir()
    if module_text is None:
        shutil.copy(MODULE, verify / "ordergw.py")
    else:
        (verify / "ordergw.py").write_text(module_text)
    data = playbook("ordergw", "5.1.0", canary={"bake": "1s"}, rollback="run")
    data["checks"].append({"name": "host-state", "testinfra": {"file": "verify/ordergw.py", "timeout": "90s"}})
    return write(tmp_path / "pb.yml", data)


def test_apply_runs_the_module_after_start_and_after_the_bake(
    tmp_path, vm_inventory, reset_hosts, vm_host, vm_hosts
) -> None:  # type: ignore[no-untyped-def]
    from tests.vm.hoststate import assert_on
    from tests.vm.upgrader_cli import Upgrader

    upgrader = Upgrader(tmp_path / "state", vm_inventory)
    run = upgrader.apply(_playbook_with_module(tmp_path), timeout=600)
    assert run.code == 0, run.output
    assert_on(vm_host, vm_hosts, "ordergw", "5.1.0")
    events = [e for e in upgrader.journal() if e["event"] == "testinfra"]
    assert {e["host"] for e in events} == set(vm_hosts) and all(e["ok"] for e in events)
    assert {e["when"] for e in events} == {"after start", "at the end of the bake"}
    assert all(e["tests_passed"] == 4 for e in events)


@pytest.mark.reliability(
    "a testinfra module fails on the canary during apply",
    "the canary fails with the test's name and message; the run rolls back; exit 3",
)
def test_a_failing_module_fails_the_canary_and_rolls_back(
    tmp_path, vm_inventory, reset_hosts, vm_host, vm_hosts, record_property
) -> None:  # type: ignore[no-untyped-def]
    from tests.vm.hoststate import assert_on
    from tests.vm.upgrader_cli import Upgrader

    module = "def test_risk_limits_loaded(host):\n    assert host.file('/etc/ordergw/limits.d').exists, 'no limits'\n"
    upgrader = Upgrader(tmp_path / "state", vm_inventory)
    run = upgrader.apply(_playbook_with_module(tmp_path, module), timeout=600)
    assert run.code == 3, run.output
    assert_on(vm_host, vm_hosts, "ordergw", "5.0.0")
    [event] = [e for e in upgrader.journal() if e["event"] == "testinfra"]
    assert not event["ok"] and event["failures"][0]["test"] == "test_risk_limits_loaded"
    assert "no limits" in event["failures"][0]["message"]
    record_property(
        "observed",
        f"exit {run.code}; {event['host']}: {event['failures'][0]['test']}: "
        f"{event['failures'][0]['message'].splitlines()[0][:80]}; all back on 5.0.0",
    )
