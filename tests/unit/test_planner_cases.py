"""Data-driven planner cases: each folder under planner_cases/ is inputs in, the salient plan out.

A case folder holds ``playbook.yml``, ``inventory.yml``, optionally ``facts.yml``, and
``expected.yml``: phases (kind, datacenter, hosts, bake, pause), each host's version path,
skipped hosts with their reason and the problems.  Regenerate after an intended change with

    UPGRADER_REGEN=1 pytest tests/unit/test_planner_cases.py

and review the diff of the expected.yml files before committing them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.conftest import plan_files
from upgrader.models.plan import Plan
from upgrader.planning.describe import describe

CASES = Path(__file__).parent / "planner_cases"
REGEN = os.environ.get("UPGRADER_REGEN") == "1"


def salient(plan: Plan) -> dict[str, Any]:
    """The parts of a plan a reviewer checks; digests are covered elsewhere, operations in test_plan_ops.py."""
    return {
        "applicable": plan.applicable,
        "artifacts": [a.version for a in plan.artifacts],
        "phases": [
            {
                "kind": p.kind,
                "datacenter": p.datacenter,
                "hosts": p.hosts,
                "bake": p.bake,
                "pause_before": p.pause_before,
                **({"gate": p.gate.model_dump()} if p.gate else {}),
            }
            for p in plan.phases
        ],
        "hosts": {
            h.host: {
                "datacenter": h.datacenter,
                "from": h.from_version,
                "path": h.path,
                "phase": h.phase,
                "canary": h.canary,
            }
            for h in plan.hosts
        },
        # Each host's steps as a reviewer reads them, rendered from the operations the engine sends.
        "steps": {
            h.host: [f"{s.id.split('/', 1)[1]}: {describe(s, plan.spec.install.root)[0]}" for s in h.steps]
            for h in plan.hosts
        },
        "skipped": {s.host: s.reason for s in plan.skipped},
        "problems": [{"host": p.host, "message": p.message} for p in plan.problems],
    }


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_planner_case(case: str, in_tmp: Path) -> None:
    folder = CASES / case
    facts = folder / "facts.yml"
    got = salient(plan_files(folder / "playbook.yml", folder / "inventory.yml", facts if facts.exists() else None))
    expected_file = folder / "expected.yml"
    if REGEN:
        expected_file.write_text(yaml.safe_dump(got, sort_keys=False, allow_unicode=True, width=100), encoding="utf-8")
    assert got == yaml.safe_load(expected_file.read_text(encoding="utf-8"))


def test_every_case_is_complete() -> None:
    for folder in (p for p in CASES.iterdir() if p.is_dir()):
        names = {f.name for f in folder.iterdir()}
        assert {"playbook.yml", "inventory.yml", "expected.yml"} <= names, folder.name
