"""Same inputs, byte-identical plan: in-process, across processes and hash seeds; any input change moves the hash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.conftest import INVENTORY, PLAYBOOKS, plan_files
from upgrader.models.plan import SCHEMA_VERSION
from upgrader.planning.render import to_markdown, to_text

CASES = Path(__file__).parent / "planner_cases"
ORDERGW = next(p for p in PLAYBOOKS if p.name.startswith("ordergw"))


@pytest.fixture
def copied(in_tmp: Path) -> Path:
    shutil.copy(ORDERGW, in_tmp / "playbook.yml")
    shutil.copy(INVENTORY, in_tmp / "inventory.yml")
    return in_tmp


def cli_json(cwd: Path, seed: str) -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    proc = subprocess.run(
        [sys.executable, "-m", "upgrader", "plan", "playbook.yml", "-i", "inventory.yml", "--format", "json"],
        cwd=cwd,
        env=env,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda p: p.stem)
def test_twice_in_process_is_identical(playbook: Path, in_tmp: Path) -> None:
    first, second = plan_files(playbook, INVENTORY), plan_files(playbook, INVENTORY)
    assert first.to_json() == second.to_json()
    assert to_text(first, verbose=True) == to_text(second, verbose=True)
    assert to_markdown(first) == to_markdown(second)


def test_across_processes_hash_seeds_and_directories(copied: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    for name in ("playbook.yml", "inventory.yml"):
        shutil.copy(copied / name, elsewhere / name)
    outputs = {cli_json(copied, "0"), cli_json(copied, "12345"), cli_json(elsewhere, "random")}
    assert len(outputs) == 1
    assert outputs.pop().decode() == plan_files(Path("playbook.yml"), Path("inventory.yml")).to_json()


def test_json_is_laid_out_in_a_fixed_order_and_hash_is_over_the_canonical_body(copied: Path) -> None:
    import hashlib
    import json

    from upgrader.models.plan import canonical_json
    from upgrader.models.plan_json import FILE_ORDER

    plan = plan_files(Path("playbook.yml"), Path("inventory.yml"))
    data = json.loads(plan.to_json())
    assert list(data) == [key for key in FILE_ORDER if key in data]  # the operations before the hosts
    assert list(data).index("operations") < list(data).index("programs") < list(data).index("hosts")
    assert all(list(op) == sorted(op) for op in data["operations"])
    assert data["content_hash"] == plan.content_hash == plan.compute_hash()
    body = {k: v for k, v in data.items() if k != "content_hash"}
    assert plan.compute_hash() == "sha256:" + hashlib.sha256(canonical_json(body).encode()).hexdigest()
    assert data["schema_version"] == SCHEMA_VERSION == 4


EDITS = {
    "playbook: bake": ("playbook.yml", "bake: 8s", "bake: 9s"),
    "playbook: comment only": ("playbook.yml", "# Order-entry", "# Order entry"),
    "playbook: batch": ("playbook.yml", "batch: 1", "batch: 2"),
    "inventory: installed": (
        "inventory.yml",
        'ordergw: "5.0.0", riskgw: "2.4.0", feedhandler: "3.1.0"}\n      ny5-oe02',
        'ordergw: "5.1.0", riskgw: "2.4.0", feedhandler: "3.1.0"}\n      ny5-oe02',
    ),
    "inventory: address": ("inventory.yml", "address: 192.0.2.16", "address: 192.0.2.116"),
    "inventory: host not running it": ("inventory.yml", "address: 192.0.2.10", "address: 192.0.2.110"),
}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_any_input_change_changes_the_hash(name: str, copied: Path) -> None:
    before = plan_files(Path("playbook.yml"), Path("inventory.yml")).content_hash
    file, old, new = EDITS[name]
    text = (copied / file).read_text()
    assert old in text
    (copied / file).write_text(text.replace(old, new, 1))
    assert plan_files(Path("playbook.yml"), Path("inventory.yml")).content_hash != before


def test_facts_change_the_hash(in_tmp: Path) -> None:
    folder = CASES / "facts_override"
    plain = plan_files(folder / "playbook.yml", folder / "inventory.yml")
    with_facts = plan_files(folder / "playbook.yml", folder / "inventory.yml", folder / "facts.yml")
    assert plain.facts_fingerprint != with_facts.facts_fingerprint
    assert plain.content_hash != with_facts.content_hash


def test_text_and_markdown_are_stable(copied: Path) -> None:
    plan = plan_files(Path("playbook.yml"), Path("inventory.yml"))
    text, markdown = to_text(plan), to_markdown(plan)
    assert text.splitlines()[0] == (
        "ordergw → 5.2.0 (Acme Execution Systems): 9 to upgrade, 15 skipped, 0 problems — ready"
    )
    assert f"plan {plan.content_hash}" in text
    assert "  1. canary ny5      ny5-oe01, bake 8s" in text
    assert "  ny5-oe01             ny5      5.0.0 → 5.1.0 → 5.2.0 [canary]" in text
    assert markdown.startswith("### upgrader plan: `ordergw` → `5.2.0`\n")
    assert "| ny5 | 4 | 1 | 3 | 6 |" in markdown
    assert "| 1 | canary | ny5 | ny5-oe01 | 8s |" in markdown
    assert text.endswith("\n") and not text.endswith("\n\n")
