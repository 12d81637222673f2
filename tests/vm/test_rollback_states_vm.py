"""Issue 24 §1, §2 (locks, two operators at once) and §5 on the lab: `upgrader rollback` from every fleet state.

Each test starts from the baseline (feedhandler 3.0.0, ordergw 5.0.0, riskgw 2.4.0, no upgrader records)
and reads the hosts afterwards with testinfra: the current release, what the service reports, the host
lock and the host journal.  Concurrency is real: two `upgrader` processes started side by side.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.vm.hoststate import assert_on, assert_unlocked, component, host_journal, lock
from tests.vm.upgrader_cli import Upgrader, kill9, playbook, write

REPO = Path(__file__).resolve().parents[2]
FEED = REPO / "playbooks" / "feedhandler-3.1.0.yml"
ORDERGW = REPO / "playbooks" / "ordergw-5.2.0.yml"
RISKGW = REPO / "playbooks" / "riskgw-2.5.0.yml"


def rollback(upgrader: Upgrader, name: str, *extra: str, timeout: float = 180):  # type: ignore[no-untyped-def]
    return upgrader(
        "rollback",
        name,
        "-i",
        str(upgrader.inventory),
        "--reason",
        "INC-24",
        "--yes",
        "--log-format",
        "plain",
        *extra,
        timeout=timeout,
    )


def ends(upgrader: Upgrader) -> dict[str, str]:
    """Each host's end in the newest rollback run's journal."""
    end = next(e for e in reversed(upgrader.journal()) if e["event"] == "run-end")
    return {h: v["end"] for h, v in end["hosts"].items()}


def rollbacks_on(vm_host, host: str, name: str) -> int:  # type: ignore[no-untyped-def]
    """How many rollbacks switched ``host``'s current link (the host journal: a rollback op with a switch)."""
    return sum(1 for e in host_journal(vm_host(host), name) if e.get("event") == "rollback-definition")


def verified(vm_host, host: str, name: str) -> str | None:  # type: ignore[no-untyped-def]
    out = vm_host(host).run("sudo cat /var/lib/upgrader/%s/verified.json", name)
    return json.loads(out.stdout).get("version") if out.rc == 0 and out.stdout.strip() else None


@pytest.mark.reliability(
    "lab: rollback where no host has a previous release",
    "exit 0, every host 'nothing to do' and unchanged, no lock left",
)
def test_nothing_to_roll_back(upgrader, vm_host, vm_hosts, record_property):  # type: ignore[no-untyped-def]
    run = rollback(upgrader, "feedhandler", "--playbook", str(FEED))
    assert run.code == 0, run.output
    assert set(ends(upgrader).values()) == {"nothing-to-do"}
    assert "no previous release recorded for 3.0.0" in run.stdout
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    assert_unlocked(vm_host, vm_hosts, "feedhandler")
    record_property(
        "observed",
        f"exit {run.code} in {run.seconds:.1f} s; ends {set(ends(upgrader).values())}; all on 3.0.0, no lock",
    )


@pytest.mark.reliability(
    "lab: rollback after a run killed with only its canary upgraded",
    "canary back and verified, the untouched hosts skipped, exit 0, no lock left",
)
def test_partly_upgraded_fleet(upgrader, vm_host, vm_hosts, tmp_path, record_property):  # type: ignore[no-untyped-def]
    pb = write(tmp_path / "pb.yml", playbook("feedhandler", "3.1.0", canary={"bake": "60s"}))
    proc = upgrader.start_apply(pb)
    upgrader.wait_for(lambda es: any(e["event"] == "bake-begin" for e in es))
    kill9(proc)
    assert component(vm_host("ny5-1"), "feedhandler").current == "3.1.0"
    assert all(lock(vm_host(h), "feedhandler") for h in vm_hosts), "the killed run left its locks"
    run = rollback(upgrader, "feedhandler")
    got = ends(upgrader)
    assert run.code == 0, run.output
    assert got == {h: "rolled-back" if h == "ny5-1" else "nothing-to-do" for h in vm_hosts}, got
    assert "rollback-failed" not in run.stdout
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    assert_unlocked(vm_host, vm_hosts, "feedhandler")
    # §5: after the halted run and the rollback every host agrees, and status and audit say so
    status = upgrader("status", "feedhandler", "-i", str(upgrader.inventory), "--format", "json")
    assert status.code == 0 and not any(r["attention"] for r in json.loads(status.stdout)), status.output
    audit = upgrader("audit", "-i", str(upgrader.inventory), "--format", "json")
    assert audit.code == 0 and {r["verdict"] for r in json.loads(audit.stdout)} == {"ok"}, audit.output
    record_property(
        "observed", f"exit {run.code}; {got}; no lock left; then status exit {status.code}, audit exit {audit.code}"
    )


@pytest.mark.reliability(
    "lab: a multi-hop run (ordergw 5.0 -> 5.1 -> 5.2) and a requires conflict",
    "feedhandler rollback refused naming ordergw; ordergw default target 5.0.0 (named); then feedhandler goes back",
)
def test_multi_hop_and_requires(upgrader, vm_host, vm_hosts, record_property):  # type: ignore[no-untyped-def]
    assert upgrader.apply(FEED).code == 0
    assert upgrader.apply(ORDERGW).code == 0
    refused = rollback(upgrader, "feedhandler")
    assert refused.code == 1, refused.output
    assert "ordergw 5.2.0 requires feedhandler >=3.1" in refused.stderr, refused.output
    assert_on(vm_host, vm_hosts, "feedhandler", "3.1.0")
    back = rollback(upgrader, "ordergw")
    assert back.code == 0, back.output
    assert "5.2.0 → 5.0.0" in back.stdout  # the --yes output names the target, the run's start
    for h in vm_hosts:
        state = component(vm_host(h), "ordergw")
        assert (state.current, state.reported, state.schema) == ("5.0.0", "5.0.0", 1)
    feed = rollback(upgrader, "feedhandler")
    assert feed.code == 0, feed.output
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    for name in ("feedhandler", "ordergw"):
        assert_unlocked(vm_host, vm_hosts, name)
    record_property(
        "observed",
        f"feedhandler first: exit {refused.code} naming ordergw; ordergw: exit {back.code}, "
        f"all on 5.0.0 schema 1; feedhandler then: exit {feed.code}",
    )


@pytest.mark.reliability(
    "lab: rollback from a second controller (empty state dir, no playbook); status and audit "
    "from the first controller afterwards",
    "hosts back, exit 0; status and audit exit 0 with no 'last run left'",
)
def test_second_controller_then_status_and_audit(
    upgrader,
    vm_host,
    vm_hosts,
    tmp_path,  # type: ignore[no-untyped-def]
    record_property,
):
    assert upgrader.apply(FEED).code == 0
    laptop = Upgrader(tmp_path / "laptop", upgrader.inventory)
    run = rollback(laptop, "feedhandler")
    assert run.code == 0, run.output
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    assert_unlocked(vm_host, vm_hosts, "feedhandler")
    again = rollback(laptop, "feedhandler")  # its own earlier rollback run: nothing left to undo
    assert again.code == 0 and set(ends(laptop).values()) == {"nothing-to-do"}, again.output
    status = upgrader("status", "feedhandler", "-i", str(upgrader.inventory), "--format", "json")
    rows = json.loads(status.stdout)
    assert status.code == 0 and not any(r["attention"] for r in rows), status.output
    audit = upgrader("audit", "-i", str(upgrader.inventory), "--format", "json")
    verdicts = {(r["component"], r["host"]): r["verdict"] for r in json.loads(audit.stdout)}
    assert {v for (c, _), v in verdicts.items() if c == "feedhandler"} == {"ok"}, audit.output
    assert audit.code == 0, audit.output
    record_property(
        "observed",
        f"laptop rollback exit {run.code}, again {again.code} (nothing to do); status exit "
        f"{status.code}; audit exit {audit.code}, feedhandler verdicts ok",
    )


@pytest.mark.reliability(
    "lab: riskgw 2.5.0 -> 2.4.0 with only 2.5.0's playbook at hand",
    "2.4.0 never verified with 2.5.0's `config_schema: 2` check; exit 0, schema 1",
)
def test_riskgw_is_not_verified_with_the_new_releases_checks(
    upgrader,
    vm_host,
    vm_hosts,
    tmp_path,  # type: ignore[no-untyped-def]
    record_property,
):
    book = yaml.safe_load(RISKGW.read_text())
    book["prechecks"] = {"healthy_before": False}  # 2.5.0's check cannot pass on 2.4.0 (issue 24 §4)
    book["canary"]["bake"] = "1s"
    pb = write(tmp_path / "riskgw-2.5.0.yml", book)
    assert upgrader.apply(pb).code == 0
    run = rollback(upgrader, "riskgw", "--playbook", str(pb))
    assert run.code == 0, run.output
    assert "checks not applicable" in run.stdout
    for h in vm_hosts:
        state = component(vm_host(h), "riskgw")
        assert (state.current, state.reported, state.schema) == ("2.4.0", "2.4.0", 1)
    older = playbook(
        "riskgw",
        "2.4.0",
        checks=[
            {
                "name": "schema-1",
                "http": {"url": "http://127.0.0.1:9103/health", "status": 200, "body": '"config_schema": 1'},
                "retries": 8,
                "interval": "250ms",
            }
        ],
    )
    books = tmp_path / "books"
    books.mkdir()
    write(books / "riskgw-2.4.0.yml", older)
    assert upgrader.apply(pb).code == 0
    own = rollback(upgrader, "riskgw", "--playbook", str(pb), "--playbooks", str(books))
    assert own.code == 0, own.output
    used = [e for e in host_journal(vm_host("ny5-1"), "riskgw") if e.get("event") == "rollback-definition"]
    assert used[-1]["checks"] == ["schema-1"], used[-1]
    record_property(
        "observed",
        f"without 2.4.0's playbook: exit {run.code}, checks not applicable, schema 1; "
        f"with it: exit {own.code}, verified with {used[-1]['checks']}",
    )


def start(upgrader: Upgrader, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        upgrader.argv(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=upgrader.env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


@pytest.mark.reliability(
    "lab: two desks run `upgrader rollback` in the same second (two processes)",
    "each host switched back once; both exit 0, the second has nothing to do there; no lock",
)
def test_two_rollbacks_at_once(upgrader, vm_host, vm_hosts, tmp_path, record_property):  # type: ignore[no-untyped-def]
    assert upgrader.apply(FEED).code == 0
    desks = [Upgrader(tmp_path / d, upgrader.inventory) for d in ("desk-a", "desk-b")]
    procs = [
        start(
            d, "rollback", "feedhandler", "-i", str(d.inventory), "--reason", "INC-24", "--yes", "--log-format", "plain"
        )
        for d in desks
    ]
    results = [finish(p) for p in procs]
    assert [code for code, _ in results] == [0, 0], results
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    assert_unlocked(vm_host, vm_hosts, "feedhandler")
    counts = {h: rollbacks_on(vm_host, h, "feedhandler") for h in vm_hosts}
    per_desk = [ends(d) for d in desks]
    for h in vm_hosts:  # one desk rolled it back, the other found nothing left to undo
        assert sorted(e[h] for e in per_desk) == ["nothing-to-do", "rolled-back"], per_desk
    assert set(counts.values()) == {1}, counts
    record_property(
        "observed",
        f"exit codes {[c for c, _ in results]}; per host one rolled-back and one "
        f"nothing-to-do; rollback switches per host {counts}; no lock",
    )


@pytest.mark.reliability(
    "lab: a rollback and an apply started in the same second (two processes)",
    "each host ends on one verified release, no lock left, each exit code says what it did",
)
@pytest.mark.parametrize("delay", [0.3, 2.5])  # before the apply has switched anything; while its canary is on 3.1.0
def test_rollback_racing_an_apply(
    upgrader,
    vm_host,
    vm_hosts,
    tmp_path,
    record_property,  # type: ignore[no-untyped-def]
    delay,
):
    pb = write(tmp_path / "pb.yml", playbook("feedhandler", "3.1.0", canary={"bake": "3s"}))
    other = Upgrader(tmp_path / "desk-b", upgrader.inventory)
    apply = upgrader.start_apply(pb)
    time.sleep(delay)  # the apply has started; the rollback follows
    back = start(
        other,
        "rollback",
        "feedhandler",
        "-i",
        str(other.inventory),
        "--reason",
        "INC-24",
        "--yes",
        "--playbook",
        str(pb),
        "--log-format",
        "plain",
    )
    code_back, out_back = finish(back)
    code_apply, out_apply = finish(apply)
    assert code_back == 0, out_back
    versions: dict[str, Any] = {}
    for h in vm_hosts:
        state = component(vm_host(h), "feedhandler")
        assert state.active and state.reported == state.current, (h, state)
        assert verified(vm_host, h, "feedhandler") in (state.current, None), h  # None: baseline, never switched
        versions[h] = state.current
    assert_unlocked(vm_host, vm_hosts, "feedhandler")
    if code_apply == 0:  # the apply won outright only if the rollback was over before it took the locks
        assert set(versions.values()) == {"3.1.0"}, (versions, out_apply)
    else:
        assert "handed over" in out_apply or "taken over" in out_apply or "locked by" in out_apply, out_apply
    took = sorted(
        e["host"]
        for e in other.journal()
        if e["event"] == "host-end"
        and any(o.get("op") == "rollback" and "switch" in (o.get("steps") or []) for o in e.get("ops", []))
    )
    record_property(
        "observed",
        f"rollback {delay} s after the apply: exit {code_back}, ends {ends(other)}, "
        f"switched back {took or 'none'}; apply exit {code_apply}; versions {versions}; "
        "every service active and reporting its current release; no lock left",
    )


@pytest.mark.reliability(
    "lab: the locks of a killed run, released with `upgrader unlock`",
    "exit 0, every host unlocked, the holder named, audited",
)
def test_unlock_after_a_killed_run(upgrader, vm_host, vm_hosts, tmp_path, record_property):  # type: ignore[no-untyped-def]
    pb = write(tmp_path / "pb.yml", playbook("feedhandler", "3.1.0", canary={"bake": "15s"}))
    proc = upgrader.start_apply(pb)
    upgrader.wait_for(lambda es: any(e["event"] == "bake-begin" for e in es))
    kill9(proc)
    killed = upgrader.runs()[-1].name
    # If the killed controller's agent on the canary is still finishing its bake (whether sshd ends it on the
    # disconnect varies), unlock leaves that host, named, and unlocks the others; once it ends, unlock frees it.
    early = upgrader("unlock", "feedhandler", "-i", str(upgrader.inventory), "--reason", "run killed")
    if early.code != 0:
        assert early.code == 4 and "ny5-1" in early.stdout and "NOT unlocked" in early.stdout, early.output
        assert [h for h in vm_hosts if lock(vm_host(h), "feedhandler")] == ["ny5-1"]
    deadline = time.monotonic() + 45
    run = early
    while run.code != 0:  # the orphaned bake ends by itself
        run = upgrader("unlock", "feedhandler", "-i", str(upgrader.inventory), "--reason", "run killed")
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    assert run.code == 0 and killed in run.stdout, run.output
    assert_unlocked(vm_host, vm_hosts, "feedhandler")
    audit = [json.loads(line) for line in (upgrader.state / "audit.log").read_text().splitlines()]
    assert [a["action"] for a in audit][-2:] == ["unlock", "unlock-end"] and audit[-2]["reason"] == "run killed"
    assert audit[-1]["released"]["ny5-1"]["run"] == killed
    back = rollback(upgrader, "feedhandler")  # and the canary can be put back as usual
    assert back.code == 0, back.output
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    record_property(
        "observed",
        f"unlock right after the kill: exit {early.code} "
        f"({'ny5-1 still running its bake, named; 3 unlocked' if early.code else 'all 4'}); "
        f"after it ended: exit {run.code} naming {killed}; no lock; rollback after: "
        f"exit {back.code}",
    )
