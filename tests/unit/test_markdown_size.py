"""The Markdown plan fits a pull-request comment: GitHub refuses one over 65,536 characters."""

from __future__ import annotations

from pathlib import Path

import pytest

from upgrader.loading.inputs import load_playbook
from upgrader.models.inventory import Inventory
from upgrader.models.plan import SourceRef
from upgrader.planning.planner import facts_from_inventory, make_plan
from upgrader.planning.render import to_markdown

REPO = Path(__file__).resolve().parents[2]
GITHUB_COMMENT_LIMIT = 65_536


def inventory(hosts: int) -> Inventory:
    """``hosts`` order gateways in two datacenters on 5.1.0, and as many again already on 5.2.0 (skipped)."""

    def dc(name: str, first: int) -> dict[str, object]:
        per_dc = hosts // 2
        return {
            "timezone": "America/New_York",
            "markets": ["XNYS"],
            "hosts": {
                f"{name}-oe{n:04d}": {
                    "address": f"10.{first}.{n // 250}.{n % 250 + 1}",
                    "roles": ["oe"],
                    "installed": {
                        "ordergw": "5.1.0" if n < per_dc else "5.2.0",
                        "feedhandler": "3.1.0",
                    },  # ordergw 5.2.0 requires >=3.1
                    "canary": n == 0,
                }
                for n in range(2 * per_dc)
            },
        }

    return Inventory.model_validate(
        {
            "name": "big",
            "defaults": {"user": "deploy"},
            "roles": {"oe": ["ordergw"]},
            "datacenters": {"ny5": dc("ny5", 10), "ch2": dc("ch2", 20)},
        }
    )


@pytest.mark.parametrize("hosts", [100, 1000])
def test_the_markdown_plan_fits_a_comment(hosts: int) -> None:
    playbook = load_playbook(REPO / "playbooks" / "ordergw-5.2.0.yml").model
    inv = inventory(hosts)
    plan = make_plan(
        playbook,
        inv,
        facts_from_inventory(inv),
        playbook_ref=SourceRef(path="playbooks/ordergw-5.2.0.yml", sha256="0" * 64),
        inventory_ref=SourceRef(path="inventories/big.yml", sha256="1" * 64, name="big"),
    )
    assert len(plan.hosts) == hosts and len(plan.skipped) == hosts
    text = to_markdown(plan, window="blocked at Tue 2026-12-01 05:10 America/New_York (test)")
    assert len(text) < GITHUB_COMMENT_LIMIT, len(text)
    assert f"**{hosts} skipped:** {hosts} ×" in text  # counted by reason, not listed
    assert "ny5-oe" + f"{hosts - 1:04d}" not in text  # a skipped host's name
    assert "Window: blocked at" in text
    assert text.count("| step | does | undo | verify |") <= 4  # one table per distinct step list
