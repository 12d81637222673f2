"""schemas/*.json (what editors load via the yaml-language-server header) match `upgrader schema`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", ["playbook", "inventory", "facts"])
def test_committed_schema_is_current(kind: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "upgrader", "schema", kind], capture_output=True, text=True, check=True
    ).stdout
    assert (REPO / "schemas" / f"{kind}.json").read_text() == out, f"regenerate: upgrader schema {kind}"


def test_every_shipped_playbook_points_its_editor_at_the_schema() -> None:
    for path in (REPO / "playbooks").glob("*.yml"):
        assert path.read_text().startswith("# yaml-language-server: $schema=../schemas/playbook.json"), path
