"""`--limit` on the lab: a limited apply touches only the selected hosts; rollback --limit failed:RUN.

The hosts left out are read with testinfra before and after (release link, staged releases, the
service's start time, the host agent's journal): nothing of theirs may change, not even a read
that the agent journals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.vm.hoststate import component, host_journal
from tests.vm.upgrader_cli import playbook, write

REPO = Path(__file__).resolve().parents[2]
FEED = REPO / "playbooks" / "feedhandler-3.1.0.yml"


def _snapshot(vm_host, hosts: list[str], name: str) -> dict[str, tuple[Any, ...]]:  # type: ignore[no-untyped-def]
    return {h: (component(vm_host(h), name), len(host_journal(vm_host(h), name))) for h in hosts}


@pytest.mark.reliability("apply --limit dc:ch2", "only ch2's hosts upgraded; the others unchanged (testinfra)")
def test_a_limited_apply_touches_only_the_selected_hosts(upgrader, vm_host, vm_hosts, record_property):  # type: ignore[no-untyped-def]
    others = [h for h in vm_hosts if not h.startswith("ch2-")]
    before = _snapshot(vm_host, others, "feedhandler")
    run = upgrader.apply(FEED, "--limit", "dc:ch2")
    assert run.code == 0, run.output
    assert "LIMITED by --limit dc:ch2 to 2 host(s)" in run.stdout
    for h in ("ch2-1", "ch2-2"):
        state = component(vm_host(h), "feedhandler")
        assert (state.current, state.active, state.reported) == ("3.1.0", True, "3.1.0"), (h, state)
    after = _snapshot(vm_host, others, "feedhandler")
    assert after == before, "a host outside the limit changed"
    start = upgrader.journal()[0]
    assert start["hosts"] == ["ch2-1", "ch2-2"] and start["limit"] == ["dc:ch2"]
    record_property(
        "observed",
        f"apply --limit dc:ch2: exit 0, ch2-1/ch2-2 on 3.1.0; {', '.join(others)} "
        f"unchanged (release {before[others[0]][0].current}, same staged, same service start, "
        "host journal unchanged)",
    )


@pytest.mark.reliability(
    "rollback --limit failed:RUN after a held canary",
    "only the host that failed is rolled back; a pattern matching nothing: exit 1",
)
def test_rollback_limited_to_the_hosts_that_failed_in_a_run(
    upgrader,
    vm_host,
    vm_hosts,
    tmp_path,  # type: ignore[no-untyped-def]
    record_property,
):
    pb = write(tmp_path / "pb.yml", playbook("ordergw", "5.1.1+nostart", rollback="hold", canary={"bake": "3s"}))
    run = upgrader.apply(pb)
    assert run.code == 4, run.output  # the canary failed and is held for a human
    failed_run = upgrader.runs()[-1].name
    held = [h for h in vm_hosts if component(vm_host(h), "ordergw").current == "5.1.1+nostart"]
    assert held == ["ny5-1"], held
    others = [h for h in vm_hosts if h not in held]
    before = _snapshot(vm_host, others, "ordergw")
    back = upgrader(
        "rollback",
        "ordergw",
        "-i",
        str(upgrader.inventory),
        "--reason",
        "held canary",
        "--yes",
        "--limit",
        f"failed:{failed_run}",
        "--playbook",
        str(pb),
        "--log-format",
        "plain",
    )
    assert back.code == 0, back.output
    state = component(vm_host("ny5-1"), "ordergw")
    assert (state.current, state.active, state.reported) == ("5.0.0", True, "5.0.0")
    assert upgrader.journal()[0]["hosts"] == ["ny5-1"]
    assert _snapshot(vm_host, others, "ordergw") == before
    nothing = upgrader(
        "rollback", "ordergw", "-i", str(upgrader.inventory), "--reason", "x", "--yes", "--limit", "dc:nowhere"
    )
    assert nothing.code == 1 and "--limit dc:nowhere matches no host" in nothing.stderr
    record_property(
        "observed",
        f"apply 5.1.1+nostart (hold): exit 4, {held} failed; rollback --limit "
        f"failed:RUN: exit 0, only ny5-1 rolled back (5.0.0 active, reports 5.0.0), "
        f"{', '.join(others)} unchanged; --limit dc:nowhere: exit 1 naming the pattern",
    )
