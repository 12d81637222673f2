"""An emergency rollback started while an apply is inside a slow migrate, on the lab (issue 13 §4).

The host agent holds a per-component program lock for each program; the rollback's program takes
it over: it waits for the apply's program to end its current operation (the migrate), or past the
rollback's takeover bound (upgrader.agent.protocol.TAKEOVER_WAIT) kills it.  Either way the host
must end on the old release, with the old config, verified — and never have the two interleave.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.vm.hoststate import component, host_journal
from tests.vm.upgrader_cli import Upgrader, playbook, write
from upgrader.agent.protocol import TAKEOVER_WAIT

pytestmark = [pytest.mark.vm, pytest.mark.reliability]

CANARY = "ny5-1"  # the first host of the first datacenter: the apply's canary


def slow_migrate_playbook(tmp_path: Path, seconds: float) -> Path:
    pb = playbook("riskgw", "2.5.0", migrate=True, canary={"bake": "1s"})
    conf = "/etc/riskgw/riskgw.conf"
    # The vendor's migration, after a sleep: the config changes only once the sleep is over.
    script = f'sleep {seconds:g} && exec "$0" "$1"'
    pb["migrate"] = {
        "command": ["/bin/sh", "-c", script, "{release}/bin/migrate-config", conf],
        "timeout": f"{seconds + 60:g}s",
    }
    return write(tmp_path / "pb.yml", pb)


def wait_for_host_op(vm_host, run: str, op: str, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(
            r.get("run") == run and r.get("op") == op and r.get("phase") == "begin"
            for r in host_journal(vm_host(CANARY), "riskgw")
        ):
            return
        time.sleep(0.3)
    raise TimeoutError(f"{op} of run {run} never began on {CANARY}")


def index(records: list[dict[str, Any]], **match: Any) -> int:
    return next(i for i, r in enumerate(records) if all(r.get(k) == v for k, v in match.items()))


def take_over(
    upgrader: Upgrader,
    vm_host,
    vm_hosts,
    tmp_path: Path,
    seconds: float,  # type: ignore[no-untyped-def]
    record_property,
) -> tuple[list[dict[str, Any]], str, str]:
    pb = slow_migrate_playbook(tmp_path, seconds)
    apply = upgrader.start_apply(pb)
    try:
        upgrader.wait_for(lambda es: any(e["event"] == "host-begin" and e.get("host") == CANARY for e in es))
        apply_run = upgrader.runs()[-1].name
        wait_for_host_op(vm_host, apply_run, "migrate")
        back = upgrader(
            "rollback",
            "riskgw",
            "-i",
            str(upgrader.inventory),
            "--reason",
            "takeover drill",
            "--yes",
            "--hosts",
            CANARY,
            "--playbook",
            str(pb),
            "--log-format",
            "plain",
            timeout=seconds + TAKEOVER_WAIT + 120,
        )
        assert back.code == 0, back.output
        apply_code = apply.wait(timeout=300)
    finally:
        if apply.poll() is None:
            apply.kill()
            apply.wait()
    rollback_run = upgrader.runs()[-1].name
    assert rollback_run != apply_run
    assert apply_code != 0, "the apply did not carry on as if nothing happened"
    state = component(vm_host(CANARY), "riskgw")
    assert (state.current, state.active, state.reported, state.schema) == ("2.4.0", True, "2.4.0", 1), state
    for other in vm_hosts:
        if other != CANARY:
            assert component(vm_host(other), "riskgw").current == "2.4.0", other
    records = host_journal(vm_host(CANARY), "riskgw")
    took = records[index(records, event="takeover", run=rollback_run)]
    assert took["holder"]["run"] == apply_run
    assert index(records, event="takeover", run=rollback_run) < index(
        records, run=rollback_run, op="rollback", phase="begin"
    )
    assert not [
        r
        for r in records
        if r.get("run") == apply_run
        and r.get("op") in ("start", "verify")
        and index(records, run=apply_run, op="migrate", phase="begin") < records.index(r)
    ], "the apply did not go on after the migrate"
    record_property(
        "observed",
        f"takeover {took['how']} after {took['seconds']:.1f} s; apply exit {apply_code}; "
        f"{CANARY} on 2.4.0, schema 1, verified",
    )
    return records, apply_run, took["how"]


def test_a_rollback_during_a_slow_migrate_waits_for_it_then_undoes_it(
    upgrader,
    vm_host,
    vm_hosts,
    tmp_path,  # type: ignore[no-untyped-def]
    record_property,
):
    record_property("scenario", "emergency rollback while an apply is inside a slow migrate (15 s)")
    record_property(
        "expected",
        "rollback waits for the migrate to end, the apply stops there; host on the old "
        "release with the old config, verified",
    )
    records, apply_run, how = take_over(upgrader, vm_host, vm_hosts, tmp_path, 15, record_property)
    assert how == "waited"
    assert index(records, run=apply_run, op="migrate", phase="end") < index(records, event="taken-over", run=apply_run)


def test_a_rollback_kills_a_migrate_that_outlasts_its_takeover_bound(
    upgrader,
    vm_host,
    vm_hosts,
    tmp_path,  # type: ignore[no-untyped-def]
    record_property,
):
    record_property("scenario", f"emergency rollback while an apply's migrate hangs (> {TAKEOVER_WAIT:g} s)")
    record_property(
        "expected",
        "rollback kills the apply's agent and migration after its bound; host on the old "
        "release with the old config, verified",
    )
    records, apply_run, how = take_over(upgrader, vm_host, vm_hosts, tmp_path, TAKEOVER_WAIT + 90, record_property)
    assert how == "killed"
    assert not [
        r for r in records if r.get("run") == apply_run and r.get("op") == "migrate" and r.get("phase") == "end"
    ], "killed inside the migrate"
    leftover = vm_host(CANARY).run("pgrep -f %s", f"[s]leep {TAKEOVER_WAIT + 90:g}")  # [s]: not pgrep's shell
    assert leftover.rc == 1, "the migration's processes were killed too"
