"""Placeholders on the lab: `{release}` in checks and service commands names the right release everywhere.

The playbook's service commands and checks only work if `{release}` is the release that is running
(prechecks, facts), the one just installed (verify, bake) or the one rolled back to (rollback): an
empty or wrong value makes a command fail (`test -d ""`), and the version check reads the version
from `{release}/release.json`, so it must match the release each step expects.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.vm.hoststate import assert_on, assert_unlocked, component
from tests.vm.upgrader_cli import playbook, write

pytestmark = pytest.mark.vm

UNIT = "feedhandler.service"
# "$0" is the argument after the script: the substituted {release}, passed as data, never as shell text.
SERVICE = {
    "start": ["/bin/sh", "-c", f'test -x "$0/bin/feedhandler" && systemctl start {UNIT}', "{release}"],
    "stop": ["/bin/sh", "-c", f'test -d "$0" && systemctl stop {UNIT}', "{release}"],
    "status": ["/bin/sh", "-c", f'test -f "$0/release.json" && systemctl is-active --quiet {UNIT}', "{release}"],
    "start_timeout": "15s",
    "stop_timeout": "15s",
}
CHECKS = [
    {
        "name": "health",
        "http": {"url": "http://127.0.0.1:9101/health", "status": 200, "body": '"status": "ok"'},
        "timeout": "1s",
        "retries": 12,
        "interval": "250ms",
    },
    {
        "name": "release-file",
        "command": {"argv": ["test", "-f", "{release}/release.json"]},
        "retries": 2,
        "interval": "250ms",
    },
    # Reports the version of the release {release} names; the agent compares it with the one expected.
    {
        "name": "release-version",
        "version": {
            "argv": [
                "python3",
                "-c",
                "import json,sys; print(json.load(open(sys.argv[1]))['version'])",
                "{release}/release.json",
            ]
        },
        "retries": 2,
        "interval": "250ms",
    },
]


def placeholder_playbook(tmp_path: Path) -> Path:
    data = playbook(
        "feedhandler",
        "3.1.0",
        canary={"bake": "2s"},
        service=SERVICE,
        checks=CHECKS,
        prechecks={
            "min_free_disk_mb": 10,
            "healthy_before": True,
            "commands": [{"name": "current-release", "command": {"argv": ["test", "-d", "{release}/bin"]}}],
        },
    )
    return write(tmp_path / "feedhandler-placeholders.yml", data)


@pytest.mark.reliability(
    "checks and service commands use {release}: facts, prechecks, upgrade, rollback",
    "each names the right release: facts report it, the upgrade and the emergency rollback verify; exit 0",
)
def test_release_placeholders_through_facts_upgrade_and_emergency_rollback(
    upgrader, vm_host, vm_hosts, tmp_path, record_property
):  # type: ignore[no-untyped-def]
    pb = placeholder_playbook(tmp_path)
    assert upgrader("validate", str(pb), "-i", str(upgrader.inventory)).code == 0

    # Facts: the agent fills in the current release (3.0.0) for the status command and the version probe.
    before = upgrader("facts", str(pb), "-i", str(upgrader.inventory), "--format", "json")
    assert before.code == 0, before.output
    hosts = json.loads(before.stdout)["hosts"]
    for h in vm_hosts:
        facts = hosts[h]["components"]["feedhandler"]
        assert (facts["installed"], facts["service"], facts.get("reported_version")) == ("3.0.0", "active", "3.0.0")

    # Prechecks on 3.0.0, stop of 3.0.0, start and verify of 3.1.0, bake on the canaries.
    run = upgrader.apply(pb)
    assert run.code == 0, run.output
    assert_on(vm_host, vm_hosts, "feedhandler", "3.1.0")
    assert_unlocked(vm_host, vm_hosts, "feedhandler")

    # Emergency rollback without --to: the agent finds 3.0.0 and fills it in for the service and the checks.
    back = upgrader(
        "rollback",
        "feedhandler",
        "-i",
        str(upgrader.inventory),
        "--playbook",
        str(pb),
        "--reason",
        "placeholder drill",
        "--yes",
        "--log-format",
        "plain",
    )
    assert back.code == 0, back.output
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    after = {h: component(vm_host(h), "feedhandler") for h in vm_hosts}
    for h in vm_hosts:
        assert after[h].active
    reported = sorted({str(hosts[h]["components"]["feedhandler"].get("reported_version")) for h in vm_hosts})
    record_property(
        "observed",
        f"facts reported {reported}; apply exit {run.code}; rollback exit {back.code}, "
        f"{len(vm_hosts)} hosts back on {sorted({str(c.reported) for c in after.values()})} and active",
    )
