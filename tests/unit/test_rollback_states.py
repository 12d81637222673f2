"""`upgrader rollback` (and `unlock`, `status`, `audit`) from every state a fleet can be in, on fake hosts.

The command runs end to end (``upgrader.cli.main``) over tests/fakes (the real agent on directory
trees); only the pool is the fake hosts' one.  Assertions read the hosts afterwards: their current
release, unit state, host lock and host journal, and the command's exit code and words.

States: a clean fleet (nothing to roll back), a fleet where a killed run upgraded only its canary,
a multi-hop run, a second controller with an empty state directory and no playbook, a release whose
checks differ from the new one's (riskgw 2.4 vs 2.5), a `requires` conflict, a host whose rollback
fails, two rollbacks at once, and `unlock`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.agent_host import ControllerKilled
from tests.fakes.scenario import FROM, ROOT, TO, UNIT, Scenario
from upgrader.cli.main import main
from upgrader.commands import early, live
from upgrader.engine import remote

NY, CH = ["ny-1", "ny-2"], ["ch-1", "ch-2"]
HOSTS = NY + CH
FILES = {"VERSION": FROM + "\n", "health": "ok\n"}


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scenario]:
    s = Scenario.build(tmp_path, {"ny": NY, "ch": CH})
    monkeypatch.setattr(live, "pool_for", lambda inventory, args: s.hosts.pool())
    monkeypatch.setattr(early, "start", lambda *a: None)
    monkeypatch.chdir(tmp_path)  # no ./playbooks here: nothing is read that the test does not name
    yield s
    s.close()


def cli(s: Scenario, capsys: pytest.CaptureFixture[str], *argv: str, state: Path | None = None) -> tuple[int, str]:
    code = main(["--state-dir", str(state or s.tmp / "state"), *argv])
    out = capsys.readouterr()
    return code, out.out + out.err


def rollback(
    s: Scenario, capsys: pytest.CaptureFixture[str], *extra: str, state: Path | None = None
) -> tuple[int, str]:
    return cli(
        s,
        capsys,
        "rollback",
        "app",
        "-i",
        str(s.inventory),
        "--reason",
        "INC-1",
        "--yes",
        "--log-format",
        "plain",
        *extra,
        state=state,
    )


def locks(s: Scenario) -> dict[str, Any]:
    return {n: h.lock("app") for n, h in s.hosts.hosts.items() if h.lock("app")}


def switches(s: Scenario, host: str) -> int:
    """Times the current link moved on ``host`` (a switch op or a rollback that switched), from its journal."""
    entries = s.hosts[host].journal("app")
    return sum(1 for e in entries if e.get("phase") == "end" and e.get("ok") and e.get("op") == "switch") + sum(
        1 for e in entries if e.get("event") == "rollback-definition"
    )


def run_end(state: Path) -> dict[str, Any]:
    runs = sorted(
        (d for d in (state / "runs").iterdir() if d.name[:1].isdigit()),  # the CLI's runs, not run-N
        key=lambda d: (d.name[:16], (d / "journal.jsonl").stat().st_mtime_ns),
    )
    entries = [json.loads(line) for line in (runs[-1] / "journal.jsonl").read_text().splitlines()]
    return next(e for e in entries if e["event"] == "run-end")


def halt_after_canary(s: Scenario) -> None:
    """An apply whose controller dies once its canary (ny-1) is upgraded: the others untouched, all locked."""
    for host in HOSTS[1:]:
        s.hosts.kill_controller(host, "switch")
    with pytest.raises(ControllerKilled):
        s.apply()
    s.hosts._kills.clear()


@pytest.mark.reliability(
    "rollback on a fleet where no host has a previous release",
    "every host 'nothing to do', exit 0, no lock left, the next apply is not refused",
)
def test_nothing_to_roll_back_is_nothing_to_do_per_host_and_leaves_no_lock(
    fleet: Scenario, capsys: pytest.CaptureFixture[str], record_property: Any
) -> None:
    code, out = rollback(fleet, capsys, "--playbook", str(fleet.playbook))
    ends = run_end(fleet.tmp / "state")["hosts"]
    assert code == 0, out
    assert {h: e["end"] for h, e in ends.items()} == dict.fromkeys(HOSTS, "nothing-to-do")
    assert "no previous release recorded for 5.1.0" in out and "nothing to roll back" in out
    assert fleet.versions() == dict.fromkeys(HOSTS, FROM) and not locks(fleet)
    assert all(fleet.hosts[h].state(UNIT) == "active" for h in HOSTS)
    outcome, _ = fleet.apply()  # the next apply is not refused by a lock
    assert outcome.status == "succeeded"
    record_property(
        "observed",
        f"exit {code}; ends {sorted(set(e['end'] for e in ends.values()))}; "
        f"locks left {len(locks(fleet))}; next apply {outcome.status}",
    )


@pytest.mark.reliability(
    "rollback after a run killed with only its canary upgraded",
    "canary back and verified, untouched hosts skipped and said so, exit 0, no lock left",
)
def test_a_partly_upgraded_fleet_rolls_back_the_canary_and_skips_the_untouched(
    fleet: Scenario, capsys: pytest.CaptureFixture[str], record_property: Any
) -> None:
    history(fleet)  # every host came to FROM from 5.0.0 in an older run: that run is not the one undone
    halt_after_canary(fleet)
    assert fleet.versions() == {"ny-1": TO, "ny-2": FROM, "ch-1": FROM, "ch-2": FROM}
    assert len(locks(fleet)) == 4  # the dead run's locks
    code, out = rollback(fleet, capsys)
    ends = {h: e["end"] for h, e in run_end(fleet.tmp / "state")["hosts"].items()}
    assert code == 0, out
    assert ends == {"ny-1": "rolled-back", "ny-2": "nothing-to-do", "ch-1": "nothing-to-do", "ch-2": "nothing-to-do"}
    assert "untouched by run" in out and "rollback-failed" not in out
    assert fleet.versions() == dict.fromkeys(HOSTS, FROM) and not locks(fleet)
    assert [switches(fleet, h) for h in HOSTS] == [3, 1, 1, 1]  # the older run's, the canary's, its rollback
    record_property("observed", f"exit {code}; ends {ends}; locks left {len(locks(fleet))}")


def history(s: Scenario) -> None:
    """Every host on FROM, switched there from 5.0.0 by an older run (R-old) through the agent."""
    pool = s.hosts.pool()
    try:
        for name, host in s.hosts.hosts.items():
            host.install(ROOT, "5.0.0", {"VERSION": "5.0.0\n", "health": "ok\n"})
            res = remote.call(
                pool.session(name),
                component="app",
                root=ROOT,
                run="R-old",
                timeout=30,
                ops=[{"op": "switch", "version": FROM}],
            )
            assert res.ok, res.error
    finally:
        pool.close()


def multi_hop(s: Scenario, run: str = "R-multi") -> None:
    """What a multi-hop run 5.0.0 -> 5.1.0 -> 5.2.0 leaves on every host (the agent's own switch records)."""
    pool = s.hosts.pool()
    try:
        for name, host in s.hosts.hosts.items():
            host.install(ROOT, "5.0.0", {"VERSION": "5.0.0\n", "health": "ok\n"})
            host.install(ROOT, TO, {"VERSION": TO + "\n", "health": "ok\n"}, current=False)
            res = remote.call(
                pool.session(name),
                component="app",
                root=ROOT,
                run=run,
                timeout=30,
                ops=[{"op": "switch", "version": FROM}, {"op": "switch", "version": TO}],
            )
            assert res.ok, res.error
    finally:
        pool.close()


def test_after_a_multi_hop_run_the_default_target_is_where_the_run_began(
    fleet: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    multi_hop(fleet)
    code, out = cli(
        fleet, capsys, "rollback", "app", "-i", str(fleet.inventory), "--reason", "x", "--playbook", str(fleet.playbook)
    )  # no --yes and no terminal: the preview, then not confirmed
    assert code != 0 and "ny-1" in out and "5.2.0 → 5.0.0" in out, out
    assert fleet.versions() == dict.fromkeys(HOSTS, TO)
    code, out = rollback(fleet, capsys, "--playbook", str(fleet.playbook), "--limit", "ny-1")
    assert code == 0 and "5.2.0 → 5.0.0" in out, out  # the --yes output names the target too
    code, out = rollback(fleet, capsys, "--playbook", str(fleet.playbook), "--limit", "ny-2", "--to", FROM)
    assert code == 0, out
    assert fleet.versions() == {"ny-1": "5.0.0", "ny-2": FROM, "ch-1": TO, "ch-2": TO}


@pytest.mark.reliability(
    "rollback from a second controller: empty state directory, no playbook anywhere",
    "the hosts' records give the layout and service; hosts back, exit 0; again: nothing to do",
)
def test_a_second_controller_with_an_empty_state_dir_needs_no_playbook(
    fleet: Scenario, capsys: pytest.CaptureFixture[str], record_property: Any
) -> None:
    outcome, _ = fleet.apply()
    assert outcome.status == "succeeded"
    other = fleet.tmp / "laptop-state"
    code, out = rollback(fleet, capsys, state=other)
    assert code == 0, out
    assert fleet.versions() == dict.fromkeys(HOSTS, FROM) and not locks(fleet)
    # FROM has no record (it was there before upgrader) and no playbook of it is known: checks not applicable
    assert "checks not applicable" in out
    again, out2 = rollback(fleet, capsys, state=other)  # the controller's own earlier rollback run: no plan.json
    ends = {h: e["end"] for h, e in run_end(other)["hosts"].items()}
    assert again == 0 and ends == dict.fromkeys(HOSTS, "nothing-to-do"), out2
    assert [switches(fleet, h) for h in HOSTS] == [2] * 4
    record_property(
        "observed",
        f"first exit {code}, second exit {again} ({set(ends.values())}); versions {set(fleet.versions().values())}",
    )


def test_a_host_upgrader_has_no_record_of_has_nothing_to_do(
    fleet: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = rollback(fleet, capsys)  # a fresh fleet: no agent ever recorded where app lives
    assert code == 0 and "no record of it on this host" in out, out


def playbook_of(s: Scenario, version: str, checks: list[dict[str, Any]], path: Path) -> Path:
    book = yaml.safe_load(s.playbook.read_text())
    book.update(version=version, checks=checks, upgrade_from=">=5.0,<5.1")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(book, sort_keys=False))
    return path


def reads(name: str, version: str) -> dict[str, Any]:
    return {
        "name": name,
        "command": {"argv": ["grep", "-qx", version, "/opt/app/current/VERSION"]},
        "retries": 0,
        "interval": "50ms",
        "timeout": "2s",
    }


@pytest.mark.reliability(
    "rollback to a release whose checks differ from the new release's (riskgw 2.4 vs 2.5)",
    "never verified with the new release's checks: its own playbook's, or not applicable",
)
def test_a_release_is_verified_with_its_own_checks_never_the_new_releases(
    fleet: Scenario, capsys: pytest.CaptureFixture[str], record_property: Any
) -> None:
    # TO's playbook checks what only TO has (as riskgw 2.5.0's `config_schema: 2`).
    new = playbook_of(fleet, TO, [reads("is-5.2", TO)], fleet.playbook)
    book = yaml.safe_load(new.read_text())
    # 2.5.0's check cannot pass on 2.4.0: its precheck is off here (issue 24 §4 is another change's)
    book.update(upgrade_from=">=5.1,<5.2", prechecks={"min_free_disk_mb": 0, "healthy_before": False})
    new.write_text(yaml.safe_dump(book, sort_keys=False))
    fleet.plan = Scenario.plan_for(fleet.tmp)
    assert fleet.apply()[0].status == "succeeded"
    code, out = rollback(fleet, capsys, "--playbook", str(new), "--limit", "ny-1")
    assert code == 0 and "checks not applicable" in out, out  # no record of FROM, no playbook of FROM
    books = fleet.tmp / "books"
    playbook_of(fleet, FROM, [reads("is-5.1", FROM)], books / "app-5.1.0.yml")
    code, out = rollback(fleet, capsys, "--playbook", str(new), "--playbooks", str(books), "--limit", "ny-2")
    assert code == 0, out
    used = [e for e in fleet.hosts["ny-2"].journal("app") if e.get("event") == "rollback-definition"]
    assert used[-1]["checks"] == ["is-5.1"] and used[-1]["source"] == "sent"
    assert fleet.versions() == {"ny-1": FROM, "ny-2": FROM, "ch-1": TO, "ch-2": TO}
    record_property(
        "observed",
        f"exit {code}; ny-2 verified with {used[-1]['checks']} "
        f"({used[-1].get('playbook')}); ny-1 checks not applicable",
    )


def test_a_rollback_that_breaks_another_components_requires_is_refused_unless_forced(
    fleet: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fleet.apply()[0].status == "succeeded"
    inv = yaml.safe_load(fleet.inventory.read_text())
    inv["roles"]["gw"] = ["gw"]
    for dc in inv["datacenters"].values():
        for host in dc["hosts"].values():
            host["roles"].append("gw")
    fleet.inventory.write_text(yaml.safe_dump(inv, sort_keys=False))
    book = yaml.safe_load(fleet.playbook.read_text())
    book.update(
        component="gw",
        version="1.0.0",
        upgrade_from="<1.0",
        requires={"app": ">=5.2"},
        install={"root": "/opt/gw"},
        service={"systemd": "gw.service"},
    )
    books = fleet.tmp / "books"
    books.mkdir()
    (books / "gw-1.0.0.yml").write_text(yaml.safe_dump(book, sort_keys=False))
    for host in fleet.hosts.hosts.values():
        host.install("/opt/gw", "1.0.0", {"VERSION": "1.0.0\n"})
    code, out = rollback(fleet, capsys, "--playbooks", str(books))
    assert code == 1 and "gw 1.0.0 requires app >=5.2" in out and "--force-requires" in out, out
    assert fleet.versions() == dict.fromkeys(HOSTS, TO) and not locks(fleet)
    code, out = rollback(fleet, capsys, "--playbooks", str(books), "--force-requires", "gw goes back next")
    assert code == 0, out
    assert fleet.versions() == dict.fromkeys(HOSTS, FROM)
    audit = [json.loads(line) for line in (fleet.tmp / "state" / "audit.log").read_text().splitlines()]
    forced = [a for a in audit if a["action"] == "force-requires"]
    assert forced and forced[0]["reason"] == "gw goes back next" and len(forced[0]["conflicts"]) == 4


@pytest.mark.reliability(
    "a host whose rollback fails its verify", "exit 4 naming the host, the others back, no lock left on any host"
)
def test_a_failed_rollback_is_named_and_leaves_no_lock(
    fleet: Scenario, capsys: pytest.CaptureFixture[str], record_property: Any
) -> None:
    assert fleet.apply()[0].status == "succeeded"
    fleet.hosts["ch-2"].path(f"{ROOT}/releases/{FROM}/health").write_text("bad\n")  # FROM broke on ch-2 since
    health = yaml.safe_load(fleet.playbook.read_text())["checks"][:1]
    books = fleet.tmp / "books"
    playbook_of(fleet, FROM, health, books / "app-5.1.0.yml")  # FROM's own health check (no record of it)
    code, out = rollback(fleet, capsys, "--playbooks", str(books))
    ends = {h: e["end"] for h, e in run_end(fleet.tmp / "state")["hosts"].items()}
    assert code == 4 and "NOT rolled back: ch-2" in out, out
    assert ends == {"ny-1": "rolled-back", "ny-2": "rolled-back", "ch-1": "rolled-back", "ch-2": "rollback-failed"}
    assert not locks(fleet)
    record_property("observed", f"exit {code}; ends {ends}; locks left {len(locks(fleet))}")


@pytest.mark.reliability(
    "two emergency rollbacks of the same component started at once",
    "each host switched once; the second waits and has nothing to do; both exit 0; no lock",
)
def test_two_rollbacks_at_once_change_each_host_once(
    fleet: Scenario, capsys: pytest.CaptureFixture[str], record_property: Any
) -> None:
    assert fleet.apply()[0].status == "succeeded"
    codes: dict[str, int] = {}

    def one(name: str) -> None:
        codes[name] = main(
            [
                "--state-dir",
                str(fleet.tmp / name),
                "rollback",
                "app",
                "-i",
                str(fleet.inventory),
                "--reason",
                name,
                "--yes",
                "--log-format",
                "json",
            ]
        )

    threads = [threading.Thread(target=one, args=(n,)) for n in ("desk-a", "desk-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    capsys.readouterr()
    ends = {n: sorted({e["end"] for e in run_end(fleet.tmp / n)["hosts"].values()}) for n in codes}
    assert codes == {"desk-a": 0, "desk-b": 0}, ends
    assert fleet.versions() == dict.fromkeys(HOSTS, FROM) and not locks(fleet)
    assert [switches(fleet, h) for h in HOSTS] == [2] * 4  # the apply's switch and one rollback each
    record_property("observed", f"exit codes {codes}; ends {ends}; each host switched back once")


@pytest.mark.reliability(
    "a killed run's host locks, released with `upgrader unlock`",
    "only the selected hosts unlocked, the holder named, audited; then an apply proceeds",
)
def test_unlock_releases_the_locks_a_killed_run_left(
    fleet: Scenario, capsys: pytest.CaptureFixture[str], record_property: Any
) -> None:
    halt_after_canary(fleet)
    held = {h: lk["run"] for h, lk in locks(fleet).items()}
    code, out = cli(
        fleet, capsys, "unlock", "app", "-i", str(fleet.inventory), "--reason", "run killed", "--limit", "ny-1"
    )
    assert code == 0 and f"apply run {held['ny-1']}" in out, out
    assert sorted(locks(fleet)) == ["ch-1", "ch-2", "ny-2"]
    code, out = cli(fleet, capsys, "unlock", "app", "-i", str(fleet.inventory), "--reason", "run killed")
    assert code == 0 and not locks(fleet), out
    audit = [json.loads(line) for line in (fleet.tmp / "state" / "audit.log").read_text().splitlines()]
    assert [a["action"] for a in audit] == ["unlock", "unlock-end", "unlock", "unlock-end"]
    assert audit[0]["reason"] == "run killed" and set(audit[3]["released"]) == {"ch-1", "ch-2", "ny-2"}
    code, out = cli(fleet, capsys, "unlock", "app", "-i", str(fleet.inventory), "--reason", "again")
    assert code == 0 and "no host was locked" in out
    record_property(
        "observed",
        f"locks before {len(held)}, after --limit ny-1: 3, after all: 0; audit actions {[a['action'] for a in audit]}",
    )


def test_status_and_audit_take_the_hosts_records_over_this_controllers_journal(
    fleet: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from upgrader.commands import status as status_command

    assert fleet.apply()[0].status == "succeeded"
    mine = fleet.tmp / "desk-state"  # this controller's journal says the last run left TO everywhere
    shutil.copytree(fleet.runs[-1].path.parent, mine / "runs" / "20260101T000000Z-app-0001")
    assert status_command.last_run_versions(mine, "app") == dict.fromkeys(HOSTS, TO)
    code, out = rollback(fleet, capsys, state=fleet.tmp / "other-desk")  # another desk rolls back
    assert code == 0, out
    books = fleet.tmp / "books"
    books.mkdir()
    (books / "app.yml").write_text(fleet.playbook.read_text())
    code, out = cli(
        fleet,
        capsys,
        "status",
        "app",
        "-i",
        str(fleet.inventory),
        "--playbooks",
        str(books),
        "--format",
        "json",
        state=mine,
    )
    rows = json.loads(out[: out.rindex("]") + 1])
    assert code == 0 and not any(r["attention"] for r in rows), rows
    assert {r["verified"]["version"] for r in rows} == {FROM}
    code, out = cli(
        fleet, capsys, "audit", "-i", str(fleet.inventory), "--playbook-dir", str(books), "--format", "json", state=mine
    )
    audit = json.loads(out[: out.rindex("]") + 1])
    assert code == 0 and {r["verdict"] for r in audit} == {"ok"}, audit
    assert all(r["expected_from"].startswith("host record: rollback") for r in audit)


def test_audit_with_nothing_audited_is_not_a_success(fleet: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    books = fleet.tmp / "books"
    books.mkdir()
    (books / "app.yml").write_text(fleet.playbook.read_text())
    code, out = cli(fleet, capsys, "audit", "-i", str(fleet.inventory), "--playbook-dir", str(books))
    assert code == 1 and "nothing was audited" in out and "0 of 0" not in out, out


def test_a_host_with_records_but_no_recorded_root_is_refused_naming_the_fix(
    fleet: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fleet.apply()[0].status == "succeeded"
    (fleet.hosts["ch-1"].state_dir / "app" / "install.json").unlink()  # as an older agent left it
    code, out = rollback(fleet, capsys, state=fleet.tmp / "laptop")
    assert code == 1 and "ch-1" in out and "--playbook" in out, out
    assert fleet.versions() == dict.fromkeys(HOSTS, TO) and not locks(fleet)


@pytest.mark.reliability(
    "rollback on a host with nothing to undo whose service is down (an apply taken over "
    "between its stop and its switch)",
    "its current release is started and verified, never left stopped; exit 0",
)
def test_a_host_with_nothing_to_undo_is_not_left_stopped(
    fleet: Scenario, capsys: pytest.CaptureFixture[str], record_property: Any
) -> None:
    fleet.hosts["ny-2"].unit(UNIT, state="inactive")  # as the apply's stop left it
    code, out = rollback(fleet, capsys, "--playbook", str(fleet.playbook))
    ends = {h: e["end"] for h, e in run_end(fleet.tmp / "state")["hosts"].items()}
    assert code == 0, out
    assert ends == {"ny-1": "nothing-to-do", "ny-2": "already-there", "ch-1": "nothing-to-do", "ch-2": "nothing-to-do"}
    assert all(fleet.hosts[h].state(UNIT) == "active" for h in HOSTS) and fleet.versions() == dict.fromkeys(HOSTS, FROM)
    assert "service started" in out and not locks(fleet)
    record_property("observed", f"exit {code}; ends {ends}; ny-2 unit {fleet.hosts['ny-2'].state(UNIT)}")
