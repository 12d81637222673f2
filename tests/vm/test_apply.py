"""`upgrader apply` on the lab over real SSH; host state checked with pytest-testinfra."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.vm.hoststate import assert_on, assert_unlocked, component, host_journal, lock
from tests.vm.upgrader_cli import WEEKEND, Upgrader, kill9, playbook, write

REPO = Path(__file__).resolve().parents[2]


def _line(text: str, needle: str) -> str:
    """The first line of ``text`` holding ``needle``, shortened for a table row."""
    line = next((x.strip() for x in text.splitlines() if needle in x), "(not found)")
    return line.removeprefix("error[refused]: ")[:100]


def versions(vm_host, hosts, name):  # type: ignore[no-untyped-def]
    return {h: component(vm_host(h), name).current for h in hosts}


def test_good_upgrade_with_canaries_across_two_datacenters(upgrader, vm_host, vm_hosts):  # type: ignore[no-untyped-def]
    run = upgrader.apply(REPO / "playbooks" / "feedhandler-3.1.0.yml")
    assert run.code == 0, run.output
    assert_on(vm_host, vm_hosts, "feedhandler", "3.1.0")
    assert_unlocked(vm_host, vm_hosts, "feedhandler")  # released at the end
    events = upgrader.journal()
    phases = [(e["kind"], e["datacenter"]) for e in events if e["event"] == "phase-begin"]
    assert phases[0] == ("canary", "ny5") and ("canary", "ch2") in phases
    canary_bakes = [e["host"] for e in events if e["event"] == "bake-end" and e["ok"]]
    assert canary_bakes == ["ny5-1", "ch2-1"]
    assert events[-1]["event"] == "run-end" and events[-1]["exit_code"] == 0

    again = upgrader.apply(REPO / "playbooks" / "feedhandler-3.1.0.yml")
    assert again.code == 0 and "nothing to do" in again.stdout
    assert len(upgrader.runs()) == 1, "a no-op apply starts no run"


def test_multi_hop_upgrade_with_requires_and_migration(upgrader, vm_host, vm_hosts, tmp_path):  # type: ignore[no-untyped-def]
    ordergw = REPO / "playbooks" / "ordergw-5.2.0.yml"
    blocked = upgrader("plan", str(ordergw), "-i", str(upgrader.inventory), "--live")
    assert blocked.code == 1 and "needs feedhandler >=3.1, has 3.0.0" in blocked.stdout
    assert upgrader.apply(REPO / "playbooks" / "feedhandler-3.1.0.yml").code == 0
    run = upgrader.apply(ordergw)
    assert run.code == 0, run.output
    for h in vm_hosts:
        state = component(vm_host(h), "ordergw")
        assert (state.current, state.reported, state.schema) == ("5.2.0", "5.2.0", 2)
        assert {"5.0.0", "5.1.0", "5.2.0"} <= set(state.staged)
    ends = [e for e in upgrader.journal() if e["event"] == "host-end"]
    switches = [o["current"] for o in ends[0]["ops"] if o["op"] == "switch"]
    assert switches == ["5.1.0", "5.2.0"], "5.0 steps through 5.1"


@pytest.mark.parametrize(
    ("release", "caught_by"),
    [
        ("5.1.1+healthfail", "verify"),
        ("5.1.1+nostart", "verify"),
        ("5.1.1+wrongver", "verify"),
        ("5.1.1+crash", "bake"),
        ("5.1.1+badmigrate", "migrate"),
    ],
)
def test_broken_release_caught_at_the_canary_and_rolled_back(upgrader, vm_host, vm_hosts, tmp_path, release, caught_by):  # type: ignore[no-untyped-def]
    before = {h: component(vm_host(h), "ordergw") for h in vm_hosts}
    pb = write(tmp_path / "pb.yml", playbook("ordergw", release, migrate=release.endswith("badmigrate")))
    run = upgrader.apply(pb)
    assert run.code == 3, run.output
    events = upgrader.journal()
    failed = [e for e in events if e["event"] in ("host-end", "bake-end") and not e["ok"]]
    assert [e["host"] for e in failed] == ["ny5-1"]
    bad_op = next(o for o in failed[0]["ops"] if not o["ok"])
    assert bad_op["op"] == caught_by, bad_op
    rolled = [e for e in events if e["event"] == "rollback-end"]
    assert [(e["host"], e["ok"]) for e in rolled] == [("ny5-1", True)]
    canary = component(vm_host("ny5-1"), "ordergw")
    assert (canary.current, canary.active, canary.reported, canary.schema) == ("5.0.0", True, "5.0.0", 1)
    for h in vm_hosts[1:]:
        after = component(vm_host(h), "ordergw")
        assert after.current == "5.0.0" and after.started_at == before[h].started_at, f"{h} was touched"
        assert not [r for r in host_journal(vm_host(h), "ordergw") if r.get("op") in ("stop", "switch")]


def degrade(vm_host, host: str, version: str) -> None:  # type: ignore[no-untyped-def]
    """A site-config fault: this one host cannot run ``version`` (its health answers 503)."""
    vm_host(host).run("sudo sed -i '/^\\[app\\]/a degraded_versions = %s' /etc/ordergw/ordergw.conf", version)


@pytest.mark.parametrize(
    ("policy", "back_on_500"),
    [
        ("run", {"ny5-1", "ny5-2", "ch2-1", "ch2-2"}),
        ("wave", {"ch2-2"}),
        ("host", {"ch2-2"}),
    ],
)
def test_rollback_policy_decides_which_hosts_go_back(upgrader, vm_host, vm_hosts, tmp_path, policy, back_on_500):  # type: ignore[no-untyped-def]
    # Every canary passes; the last wave host fails its verify, after ny5 and ch2-1 were upgraded.
    degrade(vm_host, "ch2-2", "5.1.0")
    pb = write(tmp_path / "pb.yml", playbook("ordergw", "5.1.0", rollback=policy, canary={"bake": "1s"}))
    run = upgrader.apply(pb)
    assert run.code == 3, run.output
    end = upgrader.journal()[-1]
    assert end["event"] == "run-end" and end["hosts"]["ch2-2"]["state"] == "rolled-back"
    for h in vm_hosts:
        state = component(vm_host(h), "ordergw")
        expected = "5.0.0" if h in back_on_500 else "5.1.0"
        assert (state.current, state.active, state.reported) == (expected, True, expected), h
    rolled = {e["host"] for e in upgrader.journal() if e["event"] == "rollback-end" and e["ok"]}
    assert rolled == back_on_500


def test_rollback_policy_hold_leaves_the_failed_host_for_a_human(upgrader, vm_host, tmp_path):  # type: ignore[no-untyped-def]
    degrade(vm_host, "ch2-2", "5.1.0")
    pb = write(tmp_path / "pb.yml", playbook("ordergw", "5.1.0", rollback="hold", canary={"bake": "1s"}))
    run = upgrader.apply(pb)
    assert run.code == 4 and "held" in run.output, run.output
    assert component(vm_host("ch2-2"), "ordergw").current == "5.1.0"
    assert lock(vm_host("ch2-2"), "ordergw") is not None, "a held host keeps its lock until a human acts"
    assert lock(vm_host("ch2-1"), "ordergw") is None


@pytest.mark.reliability("artifact checksum mismatch", "refused before any host changes; exit 1")
def test_checksum_mismatch_refused_before_any_host_changes(upgrader, vm_host, vm_hosts, tmp_path, record_property):  # type: ignore[no-untyped-def]
    pb = write(tmp_path / "pb.yml", playbook("ordergw", "5.1.0", sha256="0" * 64))
    run = upgrader.apply(pb)
    assert run.code == 1 and "sha256 mismatch" in run.stderr
    states = {h: component(vm_host(h), "ordergw") for h in vm_hosts}
    records = {h: len(host_journal(vm_host(h), "ordergw")) for h in vm_hosts}
    for h in vm_hosts:
        assert states[h].staged == ("5.0.0",) and states[h].current == "5.0.0"
        assert records[h] == 0
    line = _line(run.stderr, "sha256 mismatch").split(": file has")[0]
    record_property(
        "observed",
        f"exit {run.code}: {line}; {len(vm_hosts)} hosts: current "
        f"{sorted({str(s.current) for s in states.values()})}, {sum(records.values())} host journal record(s)",
    )


@pytest.mark.parametrize("release", ["5.1.1+traversal", "5.1.1+abspath", "5.1.1+symlinkout"])
@pytest.mark.reliability(
    "tarball with '..', absolute or outward-symlink members", "refused at staging, nothing left on any host; exit 3"
)
def test_unsafe_tarball_refused_at_staging_and_nothing_left(
    upgrader, vm_host, vm_hosts, tmp_path, release, record_property
):  # type: ignore[no-untyped-def]
    run = upgrader.apply(write(tmp_path / "pb.yml", playbook("ordergw", release)))
    assert run.code == 3 and "unsafe tarball" in run.output, run.output
    staged, evil = set(), 0
    for h in vm_hosts:
        host = vm_host(h)
        state = component(host, "ordergw")
        assert state.staged == ("5.0.0",) and state.current == "5.0.0" and state.active
        planted = [p for p in ("/opt/ordergw/evil", "/tmp/evil") if host.file(p).exists]
        assert not planted, (h, planted)
        assert lock(host, "ordergw") is None
        staged.add(state.staged)
        evil += len(planted)
    reason = _line(run.output, "unsafe tarball").split(" ", 1)[1]  # without the log line's time
    record_property(
        "observed",
        f"exit {run.code}: {reason}; {len(vm_hosts)} hosts staged {sorted(staged)}, {evil} evil file(s), no lock left",
    )


@pytest.mark.reliability(
    "two operators start apply at once",
    "the second is refused (host locks; local lock on the same controller), naming the holder",
)
def test_concurrent_apply_is_refused_by_the_host_locks(upgrader, vm_host, tmp_path, vm_inventory, record_property):  # type: ignore[no-untyped-def]
    pb = write(tmp_path / "pb.yml", playbook("ordergw", "5.1.0", canary={"bake": "20s"}))
    first = upgrader.start_apply(pb)
    try:
        upgrader.wait_for(lambda es: any(e["event"] == "bake-begin" for e in es))
        other = Upgrader(tmp_path / "other-state", vm_inventory)  # another operator, another controller
        second = other.apply(pb)
        assert second.code == 1 and "locked by run" in second.stderr, second.output
        same = upgrader.apply(pb)
        assert same.code == 1 and "locked on this controller" in same.stderr, same.output
        record_property(
            "observed",
            f"other controller exit {second.code}: {_line(second.stderr, 'locked by run')}; "
            f"same controller exit {same.code}: {_line(same.stderr, 'locked on this controller')}",
        )
    finally:
        first.terminate()
        first.wait(timeout=120)


def test_killed_mid_wave_then_resume_finishes_cleanly(upgrader, vm_host, vm_hosts, tmp_path):  # type: ignore[no-untyped-def]
    pb = write(tmp_path / "pb.yml", playbook("feedhandler", "3.1.0", canary={"bake": "1s"}))
    proc = upgrader.start_apply(pb)
    upgrader.wait_for(lambda es: any(e["event"] == "host-begin" and e["host"] == "ny5-2" for e in es))
    kill9(proc)
    run_id = upgrader.runs()[-1].name
    assert not any(e["event"] == "run-end" for e in upgrader.journal())
    assert (lock(vm_host("ny5-2"), "feedhandler") or {}).get("run") == run_id, "the killed run still holds its locks"
    resumed = upgrader("resume", run_id, "--yes", *WEEKEND, "--log-format", "plain")
    assert resumed.code == 0, resumed.output
    assert_on(vm_host, vm_hosts, "feedhandler", "3.1.0")
    assert_unlocked(vm_host, vm_hosts, "feedhandler")
    entries = upgrader.journal()
    assert any(e["event"] == "resume" for e in entries) and entries[-1]["event"] == "run-end"


@pytest.mark.reliability("a host frozen (lxc-freeze) mid-run", "reported within the timeout; exit 4 naming it")
def test_host_frozen_mid_run_is_reported_within_the_timeout(upgrader, vm_host, tmp_path, faults, record_property):  # type: ignore[no-untyped-def]
    pb = write(tmp_path / "pb.yml", playbook("feedhandler", "3.1.0", canary={"bake": "3s"}, rollback="host"))
    proc = upgrader.start_apply(pb, "--connect-timeout", "3")
    upgrader.wait_for(lambda es: any(e["event"] == "bake-begin" for e in es))
    faults.freeze("ch2-2")
    frozen_at = time.monotonic()
    out, err = proc.communicate(timeout=180)
    seconds = time.monotonic() - frozen_at
    assert proc.returncode == 4, out + err
    end = upgrader.journal()[-1]
    assert end["hosts"]["ch2-2"]["state"] in ("unreachable", "rollback-failed")
    assert "ch2-2" in end["message"]
    faults.unfreeze("ch2-2")
    record_property(
        "observed",
        f"exit {proc.returncode} {seconds:.0f} s after the freeze; ch2-2 {end['hosts']['ch2-2']['state']}: "
        f"{end['message'].split(';')[0][:100]}",
    )
