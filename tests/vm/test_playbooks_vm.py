"""Every shipped playbook (playbooks/*.yml) plans, applies and rolls back on the lab.

Parametrized over the directory listing, so a new playbook is covered by adding it.  A shipped
example that cannot pass its own prechecks on the baseline (riskgw-2.5.0 once checked the running
2.4.0 with 2.5.0's `config_schema: 2`) fails here, not in an operator's first run.  The playbooks a
playbook `requires` are applied first, from the same directory.  Every host is put back on the
baseline before and after.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from lab import control
from tests.vm.hoststate import assert_on, assert_unlocked, component
from tests.vm.upgrader_cli import Upgrader

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "playbooks").glob("*.yml"))


def _spec(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def _required(path: Path) -> list[Path]:
    """The shipped playbooks that satisfy ``path``'s requires, each after its own requirements."""
    order: list[Path] = []
    for name, wanted in (_spec(path).get("requires") or {}).items():
        match = [
            p
            for p in SHIPPED
            if _spec(p)["component"] == name and Version(str(_spec(p)["version"])) in SpecifierSet(wanted)
        ]
        assert match, f"{path.name} requires {name} {wanted}: no playbook in playbooks/ gives it"
        for p in [*_required(match[-1]), match[-1]]:
            if p not in order:
                order.append(p)
    return order


@pytest.fixture
def upgrader(tmp_path: Path, vm_inventory: Path, reset_hosts: None) -> Iterator[Upgrader]:
    yield Upgrader(tmp_path / "state", vm_inventory)
    control.reset()  # the lab stays at its baseline for the next test, whatever happened here


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_playbook_plans_applies_and_rolls_back(
    upgrader: Upgrader,
    vm_host,
    vm_hosts,  # type: ignore[no-untyped-def]
    path: Path,
) -> None:
    spec = _spec(path)
    name, version = spec["component"], str(spec["version"])
    baseline = {h: component(vm_host(h), name).current for h in vm_hosts}
    assert len(set(baseline.values())) == 1, baseline
    [start] = set(baseline.values())
    assert start is not None, baseline
    for needed in _required(path):
        run = upgrader.apply(needed)
        assert run.code == 0, f"{needed.name} (required by {path.name}): {run.output}"

    plan = upgrader("plan", str(path), "-i", str(upgrader.inventory), "--live")
    assert plan.code == 0 and " 0 problems" in plan.stdout.splitlines()[0], plan.output
    run = upgrader.apply(path)
    assert run.code == 0, run.output
    assert_on(vm_host, vm_hosts, name, version)
    assert_unlocked(vm_host, vm_hosts, name)

    back = upgrader(
        "rollback",
        name,
        "-i",
        str(upgrader.inventory),
        "--reason",
        f"test: {path.name} rolled back",
        "--yes",
        "--to",
        start,
        "--playbook",
        str(path),
        "--log-format",
        "plain",
    )
    assert back.code == 0, back.output
    assert_on(vm_host, vm_hosts, name, start)
    assert_unlocked(vm_host, vm_hosts, name)
