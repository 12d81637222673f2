"""An apply taken over between its stop and its start leaves the service down: the emergency rollback that took
it over must start what runs, even with no playbook and no record of the release (the fleet model's sequence:
an apply and a rollback from two desks in the same second, the rollback said "nothing to do" and exit 0 while the
host's service stayed stopped).  The real agent code runs on real files.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.unit import agent_code


@pytest.fixture
def agent(tmp_path: Path) -> ModuleType:
    return agent_code.load("upgrader_agent_stopped", tmp_path / "state")


@pytest.fixture
def host(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A host running 1.0 with nothing recorded of it (seeded by hand): no previous release, no definitions."""
    root = tmp_path / "opt" / "app"
    (root / "releases" / "1.0" / ".upgrader").mkdir(parents=True, mode=0o700)
    (root / "current").symlink_to("releases/1.0")
    up = tmp_path / "running"
    up.touch()
    service = {
        "start": ["touch", str(up)],
        "stop": ["rm", "-f", str(up)],
        "status": ["test", "-e", str(up)],
        "start_timeout": 5,
        "stop_timeout": 5,
    }
    return root, service


def rollback_without_playbook(agent: ModuleType, root: Path) -> dict[str, Any]:
    ctx = {"component": "app", "run": "RB", "root": str(root)}
    s: dict[str, Any] = {
        "op": "rollback",
        "to": None,
        "service": None,
        "checks": [],
        "recorded": True,
        "definitions": {},
    }
    out: dict[str, Any] = agent.op_rollback(ctx, s)
    return out


@pytest.mark.reliability(
    "emergency rollback with no playbook of a host whose service an apply stopped and never started (taken over "
    "between its stop and its start)",
    "the rollback starts the release that runs with the service the apply stopped (recorded by the stop) and says "
    "so; once a start followed the stop there is nothing to do",
)
def test_a_service_an_apply_stopped_is_started_by_the_rollback(
    agent: ModuleType, host: tuple[Path, dict[str, Any]], record_property: Any
) -> None:
    root, service = host
    ctx = {"component": "app", "run": "APPLY", "root": str(root)}
    agent.op_stop(ctx, {"service": service})
    down = agent.service_state(service)
    taken_over = rollback_without_playbook(agent, root)
    after = agent.service_state(service)
    agent.op_stop(ctx, {"service": service})
    agent.op_start(ctx, {"service": service})  # a stop its own program started again: nothing left to do
    again = rollback_without_playbook(agent, root)
    record_property(
        "observed",
        f"after the apply's stop: {down}; rollback: steps {taken_over.get('steps')}, service {after}, "
        f"definition {taken_over.get('definition', {}).get('source')}; after a stop and a start: "
        f"nothing={again.get('nothing')} ({again.get('reason')})",
    )
    assert down != "active" and taken_over.get("steps") == ["start"] and after == "active"
    assert not taken_over.get("nothing")
    assert again.get("nothing") is True
