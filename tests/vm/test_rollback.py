"""`upgrader rollback` and `upgrader status` on the lab: fast, parallel, audited, refusing what it cannot do."""

from __future__ import annotations

import json
from pathlib import Path

from tests.vm.hoststate import assert_on, assert_unlocked, component
from tests.vm.upgrader_cli import Upgrader, kill9, playbook, write

REPO = Path(__file__).resolve().parents[2]
FEED = REPO / "playbooks" / "feedhandler-3.1.0.yml"


def rollback(upgrader: Upgrader, component_name: str, *extra: str, timeout: float = 120):  # type: ignore[no-untyped-def]
    return upgrader(
        "rollback", component_name, "-i", str(upgrader.inventory), "--log-format", "plain", *extra, timeout=timeout
    )


def test_rollback_after_a_good_upgrade(upgrader, vm_host, vm_hosts):  # type: ignore[no-untyped-def]
    assert upgrader.apply(FEED).code == 0
    run = rollback(upgrader, "feedhandler", "--reason", "INC-1 gap fills", "--yes")
    assert run.code == 0, run.output
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    assert_unlocked(vm_host, vm_hosts, "feedhandler")
    journal = upgrader.journal()
    assert journal[0]["kind"] == "rollback" and journal[0]["reason"] == "INC-1 gap fills"
    assert journal[0]["break_glass"] is True and journal[0]["operator"].startswith("pytest@")
    assert {e["host"] for e in journal if e["event"] == "host-end" and e["ok"]} == set(vm_hosts)
    audit = [json.loads(line) for line in (upgrader.state / "audit.log").read_text().splitlines()]
    # the apply before it ran at a simulated weekend time: its guard-bypassed entry comes first
    rollbacks = [a for a in audit if a["action"].startswith("rollback")]
    assert [a["action"] for a in rollbacks] == ["rollback", "rollback-end"]
    assert rollbacks[0]["reason"] == "INC-1 gap fills"


def test_rollback_undoes_the_config_migration(upgrader, vm_host, vm_hosts, tmp_path):  # type: ignore[no-untyped-def]
    pb = write(tmp_path / "pb.yml", playbook("riskgw", "2.5.0", migrate=True, canary={"bake": "1s"}))
    assert upgrader.apply(pb).code == 0
    assert component(vm_host("ny5-1"), "riskgw").schema == 2
    run = rollback(upgrader, "riskgw", "--reason", "limits wrong", "--yes", "--playbook", str(pb))
    assert run.code == 0, run.output
    for h in vm_hosts:
        state = component(vm_host(h), "riskgw")
        assert (state.current, state.schema, state.reported) == ("2.4.0", 1, "2.4.0")


def test_rollback_after_a_bad_release_left_by_a_killed_run(upgrader, vm_host, tmp_path):  # type: ignore[no-untyped-def]
    pb = write(tmp_path / "pb.yml", playbook("ordergw", "5.1.1+crash", canary={"bake": "60s"}))
    proc = upgrader.start_apply(pb)
    upgrader.wait_for(lambda es: any(e["event"] == "bake-begin" for e in es))
    kill9(proc)
    killed = upgrader.runs()[-1].name
    assert component(vm_host("ny5-1"), "ordergw").current == "5.1.1+crash"
    run = rollback(upgrader, "ordergw", "--reason", "crash loop", "--yes", "--hosts", "ny5-1", "--playbook", str(pb))
    assert run.code == 0, run.output
    state = component(vm_host("ny5-1"), "ordergw")
    assert (state.current, state.active, state.reported) == ("5.0.0", True, "5.0.0")
    took_over = next(e for e in upgrader.journal() if e["event"] == "host-end")
    handover = next(o for o in took_over["ops"] if o["op"] == "lock")
    assert handover["previous_holder"]["run"] == killed, "the lock handover names the killed run"


def test_rollback_with_a_frozen_host_finishes_the_others_and_names_it(upgrader, vm_host, vm_hosts, faults):  # type: ignore[no-untyped-def]
    assert upgrader.apply(FEED).code == 0
    faults.freeze("ch2-2")
    run = rollback(upgrader, "feedhandler", "--reason", "drill", "--yes", "--connect-timeout", "3")
    assert run.code == 4, run.output
    assert "ch2-2" in run.stderr and run.seconds < 30
    faults.unfreeze("ch2-2")
    for h in vm_hosts:
        expected = "3.1.0" if h == "ch2-2" else "3.0.0"
        assert component(vm_host(h), "feedhandler").current == expected


def test_rollback_to_a_version_not_staged_everywhere_is_refused(upgrader, vm_host, vm_hosts, tmp_path):  # type: ignore[no-untyped-def]
    assert upgrader.apply(FEED).code == 0
    vm_host("ch2-1").run("sudo rm -rf /opt/feedhandler/releases/3.0.0")
    run = rollback(upgrader, "feedhandler", "--reason", "x", "--yes", "--to", "3.0.0")
    assert run.code == 1 and "ch2-1" in run.stderr and "not staged" in run.stderr, run.output
    assert {component(vm_host(h), "feedhandler").current for h in vm_hosts} == {"3.1.0"}


def test_rollback_without_a_reason_is_refused(upgrader, vm_host):  # type: ignore[no-untyped-def]
    missing = rollback(upgrader, "feedhandler", "--yes")
    assert missing.code == 2 and "--reason" in missing.stderr
    blank = rollback(upgrader, "feedhandler", "--yes", "--reason", "   ")
    assert blank.code == 1 and "reason" in blank.stderr
    assert not upgrader.runs()


def test_status_highlights_the_odd_host_out(upgrader, vm_host, tmp_path):  # type: ignore[no-untyped-def]
    pb = write(tmp_path / "pb.yml", playbook("feedhandler", "3.1.0", canary={"bake": "1s"}))
    assert upgrader.apply(pb).code == 0
    assert rollback(upgrader, "feedhandler", "--reason", "one host", "--yes", "--hosts", "ny5-2").code == 0
    status = upgrader("status", "feedhandler", "-i", str(upgrader.inventory), "--format", "json")
    rows = {r["host"]: r for r in json.loads(status.stdout)}
    assert status.code == 1
    assert rows["ny5-2"]["installed"] == "3.0.0" and rows["ny5-2"]["attention"]
    assert rows["ny5-1"]["installed"] == "3.1.0" and rows["ny5-1"]["previous"] == "3.0.0"
    assert not rows["ny5-1"]["attention"]
