"""A precheck checks the release that runs: with the checks it was verified with, when the host recorded them.

riskgw 2.5.0's playbook once checked every 2.4.0 host with 2.5.0's health check (`config_schema: 2`)
before the upgrade, and failed the run on healthy hosts.  The real agent code runs on real files.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.unit import agent_code


@pytest.fixture
def agent(tmp_path: Path) -> ModuleType:
    return agent_code.load("upgrader_agent_precheck", tmp_path / "state")  # its /var/lib/upgrader, here


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "opt" / "app"
    for v, schema in (("1.0", "1"), ("2.0", "2")):
        (root / "releases" / v / ".upgrader").mkdir(parents=True, mode=0o700)
        (root / "releases" / v / "schema").write_text(schema + "\n")
    (root / "current").symlink_to("releases/1.0")
    return root


def schema_is(root: Path, schema: str) -> dict[str, Any]:
    """A health check that fits one release only: the running release's schema file must say ``schema``."""
    return {
        "name": f"schema-{schema}",
        "kind": "command",
        "timeout": 2,
        "retries": 0,
        "interval": 0,
        "command": {"argv": ["sh", "-c", f'test "$(cat "$0"/current/schema)" = {schema}', str(root)]},
    }


def precheck(agent: ModuleType, root: Path, checks: list[dict[str, Any]]) -> dict[str, Any]:
    ctx = {"component": "app", "run": "R2", "root": str(root)}
    result: dict[str, Any] = agent.op_precheck(
        ctx, {"min_free_disk_mb": 0, "healthy_before": True, "checks": checks, "commands": []}
    )
    return result


@pytest.mark.reliability(
    "precheck of a host running 1.0 (recorded when verified) by a playbook for 2.0 whose health check fits 2.0 only",
    "the precheck passes with 1.0's recorded checks; without a record the sent checks run "
    "(and fail), so the mechanism, not luck, made the difference",
)
def test_the_running_release_is_checked_with_what_it_was_verified_with(
    agent: ModuleType, root: Path, record_property: Any
) -> None:
    new_checks = [schema_is(root, "2")]
    with pytest.raises(agent.OpFailed, match=r"sent checks of 1\.0"):  # no record yet: the playbook's checks
        precheck(agent, root, new_checks)
    ctx = {"component": "app", "run": "R1", "root": str(root)}
    service = {"start": ["true"], "stop": ["true"], "status": ["true"], "start_timeout": 5, "stop_timeout": 5}
    assert (
        agent.op_verify(ctx, {"service": service, "checks": [schema_is(root, "1")], "expect_version": "1.0"})[
            "recorded"
        ]
        is True
    )
    result = precheck(agent, root, new_checks)
    assert result["healthy_source"] == "recorded" and [c["check"] for c in result["checks"]] == ["schema-1"]
    record_property(
        "observed",
        f"without a record: OpFailed (sent checks of 1.0); with one: passed, "
        f"source {result['healthy_source']}, checks {[c['check'] for c in result['checks']]}",
    )


def test_a_recorded_release_that_is_unhealthy_still_fails(agent: ModuleType, root: Path) -> None:
    ctx = {"component": "app", "run": "R1", "root": str(root)}
    service = {"start": ["true"], "stop": ["true"], "status": ["true"], "start_timeout": 5, "stop_timeout": 5}
    assert (
        agent.op_verify(ctx, {"service": service, "checks": [schema_is(root, "1")], "expect_version": "1.0"})[
            "recorded"
        ]
        is True
    )
    (root / "releases" / "1.0" / "schema").write_text("broken\n")
    with pytest.raises(agent.OpFailed, match=r"recorded checks of 1\.0"):
        precheck(agent, root, [])
