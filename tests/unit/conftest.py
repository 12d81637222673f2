"""Shared helpers for the unit tests of the pure core (no network, no hosts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from upgrader.commands.inputs import load_facts_for, load_inputs
from upgrader.models.plan import Plan
from upgrader.planning.planner import facts_from_inventory, make_plan

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yml"))
INVENTORY = REPO / "inventories" / "prod-na.yml"


def plan_files(playbook: Path, inventory: Path, facts: Path | None = None) -> Plan:
    """What `upgrader plan` computes, without the CLI."""
    inputs = load_inputs(playbook, inventory)
    known = load_facts_for(facts, inputs.inventory) if facts else facts_from_inventory(inputs.inventory.model)
    return make_plan(inputs.playbook.model, inputs.inventory.model, known,
                     playbook_ref=inputs.playbook_ref(), inventory_ref=inputs.inventory_ref())


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory, so file names in messages and plans are short and stable."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
