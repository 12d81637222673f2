"""`upgrader rollback` without --playbook on the lab: back to 5.1.0 with what 5.1.0 was installed with.

5.1.0 and 5.2.0 are applied with playbooks whose checks carry their own names, neither of them the
newest playbook in playbooks/.  The rollback names no playbook: the layout comes from the newest run's
plan, and each host's agent uses the definition it recorded when 5.1.0 passed its verify — read
back on the host (its agent journal) with testinfra.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.vm.hoststate import component, host_journal
from tests.vm.upgrader_cli import playbook, write

PORT = 9102


def checks(tag: str) -> list[dict[str, Any]]:
    return [
        {
            "name": f"health-{tag}",
            "http": {"url": f"http://127.0.0.1:{PORT}/health", "status": 200, "body": '"status": "ok"'},
            "timeout": "1s",
            "retries": 12,
            "interval": "250ms",
        },
        {
            "name": f"version-{tag}",
            "version": {"url": f"http://127.0.0.1:{PORT}/health"},
            "retries": 2,
            "interval": "250ms",
        },
    ]


@pytest.mark.reliability(
    "emergency rollback without --playbook after 5.1.0 → 5.2.0 (custom playbooks)",
    "each host uses the service and checks it recorded when 5.1.0 was installed",
)
def test_rollback_uses_the_definition_recorded_at_install(
    upgrader,
    vm_host,
    vm_hosts,
    tmp_path,  # type: ignore[no-untyped-def]
    record_property,
):
    fast: dict[str, Any] = {"canary": {"bake": "1s"}}
    one = write(tmp_path / "og-5.1.yml", playbook("ordergw", "5.1.0", checks=checks("installed-5.1"), **fast))
    two = write(
        tmp_path / "og-5.2.yml", playbook("ordergw", "5.2.0", checks=checks("installed-5.2"), migrate=True, **fast)
    )
    assert upgrader.apply(one).code == 0
    assert upgrader.apply(two).code == 0
    back = upgrader(
        "rollback",
        "ordergw",
        "-i",
        str(upgrader.inventory),
        "--reason",
        "INC-9 5.2 rejects",
        "--yes",
        "--log-format",
        "plain",
    )
    assert back.code == 0, back.output
    seen = {}
    for h in vm_hosts:
        state = component(vm_host(h), "ordergw")
        assert (state.current, state.active, state.reported) == ("5.1.0", True, "5.1.0"), (h, state)
        used = [e for e in host_journal(vm_host(h), "ordergw") if e.get("event") == "rollback-definition"][-1]
        assert (used["source"], used["version"]) == ("recorded", "5.1.0"), (h, used)
        assert used["checks"] == ["health-installed-5.1", "version-installed-5.1"], (h, used)
        seen[h] = used
    start = upgrader.journal()[0]
    assert start["layout"].endswith("/plan.json") and "recorded service and checks" in back.stdout
    record_property(
        "observed",
        f"rollback without --playbook: exit 0, {len(seen)} hosts on 5.1.0; each host's "
        f"agent journal: source recorded (run {next(iter(seen.values())).get('recorded_run')}), checks "
        "health-installed-5.1/version-installed-5.1 (not 5.2's, not playbooks/' health)",
    )
