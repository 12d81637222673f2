"""Failure budgets, redundancy groups and pattern-read versions on the lab (issue 16, items 2, 3 and 6).

Failures are site-config faults of the test app: ``degraded_versions`` in one host's ordergw.conf
makes that release answer 503 there (tests/vm/test_apply.py's ``degrade``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.vm.hoststate import component, host_journal
from tests.vm.upgrader_cli import Upgrader, playbook, write

pytestmark = pytest.mark.reliability


def degrade(vm_host, host: str, version: str) -> None:  # type: ignore[no-untyped-def]
    vm_host(host).run("sudo sed -i '/^\\[app\\]/a degraded_versions = %s' /etc/ordergw/ordergw.conf", version)


def versions(vm_host, hosts: list[str], name: str = "ordergw") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    out = {}
    for h in hosts:
        state = component(vm_host(h), name)
        out[h] = state.current if state.active and state.reported == state.current else f"BAD {state}"
    return out


def test_failures_in_two_waves_spend_the_budget_only_together(upgrader, tmp_path, vm_host, vm_hosts, record_property):  # type: ignore[no-untyped-def]
    record_property("scenario", "failure budget of 2: one host fails in wave 1 (ny5), one in wave 3 (ch2)")
    record_property(
        "expected",
        "no wave has 2 failures, yet the run's budget is spent at the second: the last "
        "wave never starts; failed hosts rolled back (policy host); exit 3",
    )
    degrade(vm_host, "ny5-1", "5.1.0")
    degrade(vm_host, "ch2-1", "5.1.0")
    pb = write(
        tmp_path / "pb.yml",
        playbook("ordergw", "5.1.0", rollback="host", canary={"hosts": 0}, rollout={"batch": 1, "max_failures": 2}),
    )
    run = upgrader.apply(pb)
    assert run.code == 3, run.output
    entries = upgrader.journal()
    phases = [(e["phase"], e["hosts"]) for e in entries if e["event"] == "phase-begin"]
    assert phases == [(0, ["ny5-1"]), (1, ["ny5-2"]), (2, ["ch2-1"])]  # ch2-2's wave never began
    failed = [(e["host"], e["ok"]) for e in entries if e["event"] == "host-end"]
    assert failed == [("ny5-1", False), ("ny5-2", True), ("ch2-1", False)]
    halts = [e["reason"] for e in entries if e["event"] == "halt"]
    assert halts == ["failure budget spent: 2 of 2 allowed host failure(s) in the run"]
    on = versions(vm_host, vm_hosts)
    assert on == {"ny5-1": "5.0.0", "ny5-2": "5.1.0", "ch2-1": "5.0.0", "ch2-2": "5.0.0"}
    assert not [r for r in host_journal(vm_host("ch2-2"), "ordergw") if r.get("op") in ("stop", "switch")]
    record_property("observed", f"exit 3; phases {[p[1] for p in phases]}; halt: {halts[0]}; hosts {on}")


@pytest.fixture
def grouped_inventory(vm_inventory: Path) -> Iterator[Callable[[dict[str, Any]], Path]]:
    """inventories/vagrant.yml with redundancy groups, beside it (its key and known_hosts paths are relative)."""
    path = vm_inventory.parent / f".vagrant-groups-{os.getpid()}.yml"

    def write_groups(groups: dict[str, Any]) -> Path:
        data = yaml.safe_load(vm_inventory.read_text())
        data["groups"] = groups
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    yield write_groups
    path.unlink(missing_ok=True)


def down_windows(vm_host, host: str, since: float) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    """When ordergw was down on the host since ``since``, in µs of its (shared) clock, from its own journal:
    from each "stopping on SIGTERM" to the next "ready" (the app's own log lines, through journald)."""
    out = vm_host(host).check_output(
        "sudo journalctl -u ordergw.service -o json --no-pager --since @%s", str(int(since))
    )
    windows: list[tuple[int, int]] = []
    began: int | None = None
    for line in out.splitlines():
        record = json.loads(line)
        at, message = int(record["__REALTIME_TIMESTAMP"]), str(record.get("MESSAGE") or "")
        if "stopping on SIGTERM" in message and began is None:
            began = at
        elif " ready port=" in message and began is not None:
            windows.append((began, at))
            began = None
    return windows


def apart(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[1] < b[0] or b[1] < a[0]


def test_a_redundancy_pair_is_never_down_together_upgrades_and_rollbacks_included(
    upgrader, tmp_path, vm_host, vm_hosts, grouped_inventory, record_property
):  # type: ignore[no-untyped-def]
    record_property(
        "scenario",
        "ny5-1/ny5-2 are a redundancy pair (max_unavailable 1) in a batch of 2 with 2 in "
        "flight; ch2-2 fails, rollback policy run puts all four back",
    )
    record_property(
        "expected",
        "the planner splits the pair into two waves; the pair's upgrades and its two "
        "rollbacks never overlap on the hosts; ch2's two hosts share a wave; exit 3",
    )
    inv = grouped_inventory({"ordergw-ny5": {"hosts": ["ny5-1", "ny5-2"], "max_unavailable": 1}})
    grouped = Upgrader(upgrader.state, inv)
    since = time.time() - 1
    degrade(vm_host, "ch2-2", "5.1.0")
    pb = write(
        tmp_path / "pb.yml",
        playbook(
            "ordergw",
            "5.1.0",
            rollback="run",
            canary={"hosts": 0},
            rollout={"batch": 2, "max_in_flight_per_datacenter": 2},
        ),
    )
    shown = grouped("plan", str(pb), "-i", str(inv), "--live")
    run = grouped.apply(pb)
    assert run.code == 3, run.output
    entries = grouped.journal()
    phases = [e["hosts"] for e in entries if e["event"] == "phase-begin"]
    assert phases == [["ny5-1"], ["ny5-2"], ["ch2-1", "ch2-2"]]
    back = {e["host"] for e in entries if e["event"] == "rollback-end" and e["ok"]}
    assert back == set(vm_hosts)
    assert versions(vm_host, vm_hosts) == {h: "5.0.0" for h in vm_hosts}
    windows = {h: down_windows(vm_host, h, since) for h in vm_hosts}
    assert all(len(w) == 2 for w in windows.values()), windows  # each host: its upgrade, then its rollback
    for a in windows["ny5-1"]:
        for b in windows["ny5-2"]:
            assert apart(a, b), windows
    ch2 = [not apart(a, b) for a in windows["ch2-1"] for b in windows["ch2-2"]]
    assert any(ch2), windows  # ungrouped hosts of one wave were down together: the check can see overlaps
    gaps = [round((b[0] - a[1]) / 1e3) for a, b in zip(windows["ny5-1"], windows["ny5-2"], strict=True)]
    record_property(
        "observed",
        f"exit 3; plan shows the group: {'ordergw-ny5' in shown.output}; phases {phases}; "
        f"ny5-2 went down {gaps} ms after ny5-1 was ready again (upgrade, rollback); "
        f"ch2-1/ch2-2 down windows overlapped {sum(ch2)} time(s)",
    )


def test_a_vendor_build_version_read_with_patterns_from_a_body_and_a_command(
    upgrader, tmp_path, vm_host, vm_hosts, record_property
):  # type: ignore[no-untyped-def]
    record_property(
        "scenario",
        "ordergw 5.1.0_b7 (a vendor build number) with version_scheme: vendor; version "
        "checks extract it with a pattern from GET /version and from a command's output",
    )
    record_property(
        "expected",
        "releases/5.1.0_b7 on every host, named and compared as written (not PEP 440's "
        "5.1.0b7); both pattern checks pass; exit 0",
    )
    version_checks = [
        {
            "name": "reports-version",
            "version": {"url": "http://127.0.0.1:9102/version", "pattern": r"^(\S+)$"},
            "retries": 2,
            "interval": "250ms",
        },
        {
            "name": "release-file",
            "version": {"argv": ["/bin/cat", "{release}/release.json"], "pattern": r'"version": "([^"]+)"'},
            "retries": 2,
            "interval": "250ms",
        },
    ]
    health = {
        "name": "health",
        "http": {"url": "http://127.0.0.1:9102/health", "status": 200, "body": '"status": "ok"'},
        "timeout": "1s",
        "retries": 12,
        "interval": "250ms",
    }
    pb = write(
        tmp_path / "pb.yml",
        playbook(
            "ordergw",
            "5.1.0_b7",
            upgrade_from="<5.1.0_b7",
            version_scheme="vendor",
            canary={"hosts": 0},
            rollout={"batch": 2, "max_in_flight_per_datacenter": 2},
            checks=[health, *version_checks],
        ),
    )
    run = upgrader.apply(pb)
    assert run.code == 0, run.output
    assert versions(vm_host, vm_hosts) == {h: "5.1.0_b7" for h in vm_hosts}
    ends = [e for e in upgrader.journal() if e["event"] == "host-end"]
    verify = [o for e in ends for o in e["ops"] if o["op"] == "verify"]
    passed = {c["check"] for o in verify for c in o.get("checks") or [] if c["ok"]}
    assert {"reports-version", "release-file"} <= passed, verify
    facts = upgrader("facts", str(pb), "-i", str(upgrader.inventory), "--format", "json")
    assert facts.code == 0, facts.output
    reported = {h: f["components"]["ordergw"]["reported_version"] for h, f in json.loads(facts.stdout)["hosts"].items()}
    assert reported == {h: "5.1.0_b7" for h in vm_hosts}  # facts read it with the first version check's pattern
    record_property(
        "observed",
        f"exit 0; hosts {versions(vm_host, vm_hosts)}; checks passed {sorted(passed)}; "
        f"facts report {sorted(set(reported.values()))}",
    )


def test_an_emergency_rollback_takes_a_redundancy_pair_back_one_at_a_time(
    upgrader, tmp_path, vm_host, vm_hosts, grouped_inventory, record_property
):  # type: ignore[no-untyped-def]
    record_property(
        "scenario",
        "`upgrader rollback` (all hosts in parallel) of ordergw with ny5-1/ny5-2 a redundancy pair (max_unavailable 1)",
    )
    record_property("expected", "every host back on 5.0.0, verified; the pair's down windows never overlap; exit 0")
    inv = grouped_inventory({"ordergw-ny5": {"hosts": ["ny5-1", "ny5-2"], "max_unavailable": 1}})
    grouped = Upgrader(upgrader.state, inv)
    pb = write(
        tmp_path / "pb.yml",
        playbook("ordergw", "5.1.0", canary={"hosts": 0}, rollout={"batch": 2, "max_in_flight_per_datacenter": 2}),
    )
    assert grouped.apply(pb).code == 0
    # The baseline 5.0.0 was seeded, never verified by upgrader: its own playbook gives the checks that keep a
    # member down until it serves again (without one, its checks would be "not applicable", never 5.1.0's).
    books = tmp_path / "books"
    books.mkdir()
    write(books / "ordergw-5.0.0.yml", playbook("ordergw", "5.0.0"))
    since = time.time()
    run = grouped(
        "rollback",
        "ordergw",
        "-i",
        str(inv),
        "--log-format",
        "plain",
        "--reason",
        "INC-2 test",
        "--playbooks",
        str(books),
        "--yes",
        timeout=180,
    )
    assert run.code == 0, run.output
    assert versions(vm_host, vm_hosts) == {h: "5.0.0" for h in vm_hosts}
    # journalctl's --since takes whole seconds: the upgrade's last stops may fall in that second
    windows = {h: [w for w in down_windows(vm_host, h, since) if w[0] >= since * 1e6] for h in vm_hosts}
    assert all(len(w) == 1 for w in windows.values()), windows
    (a,), (b,) = windows["ny5-1"], windows["ny5-2"]
    assert apart(a, b), windows
    gap = round((max(a[0], b[0]) - min(a[1], b[1])) / 1e3)
    record_property(
        "observed", f"exit 0; all on 5.0.0; the second of the pair went down {gap} ms after the first was ready again"
    )
