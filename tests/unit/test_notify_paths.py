"""Notifications on the paths that are not a run's own events: refused applies and `upgrader notify`.

A real HTTP server on 127.0.0.1 stands in for the webhook; the inventory names it by env var.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from upgrader.cli.main import main
from upgrader.models.plan import Plan

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "playbooks" / "ordergw-5.2.0.yml"
INVENTORY = REPO / "inventories" / "prod-na.yml"  # TEST-NET addresses: nothing may connect to them


@pytest.fixture
def inventory(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("UPGRADER_STATE_DIR", str(in_tmp / "state"))
    path = in_tmp / "inventory.yml"
    path.write_text(INVENTORY.read_text() + "notify:\n  - {url_env: UPG_TEST_HOOK}\n")
    return path


def test_an_edited_plan_is_refused_and_someone_hears_of_it(
    inventory: Path, hook: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(PLAYBOOK, "playbook.yml")
    assert main(["plan", "playbook.yml", "-i", "inventory.yml", "--offline", "--out", "plan.json"]) == 0
    data = json.loads(Path("plan.json").read_text())
    data["spec"]["canary"]["bake"] = 0.0
    Path("plan.json").write_text(Plan.from_data(data).sealed().to_json())
    assert main(["apply", "plan.json", "-i", "inventory.yml", "--yes"]) == 1
    assert "spec.canary.bake" in capsys.readouterr().err
    [event] = hook
    assert (event["event"], event["component"], event["version"]) == ("refused", "ordergw", "5.2.0")
    assert "spec.canary.bake" in event["summary"]


def test_notify_command_sends_and_says_what_happened(
    inventory: Path, hook: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        main(
            [
                "notify",
                "failed",
                "-i",
                "inventory.yml",
                "--component",
                "ordergw",
                "--message",
                "upgrader-ordergw.service failed",
            ]
        )
        == 0
    )
    assert hook[0]["event"] == "failed" and hook[0]["summary"] == "upgrader-ordergw.service failed"
    assert "$UPG_TEST_HOOK: sent" in capsys.readouterr().out
    monkeypatch.delenv("UPG_TEST_HOOK")
    assert main(["notify", "failed", "-i", "inventory.yml", "--message", "x"]) == 1
    assert "not set" in capsys.readouterr().out
