"""Output people ship: plain tables keep every column, and runs/validate/diff speak JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from upgrader.cli.main import main
from upgrader.commands.tables import plain
from upgrader.journal import Journal
from upgrader.vocabulary import Event

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "playbooks" / "ordergw-5.2.0.yml"
INVENTORY = REPO / "inventories" / "prod-na.yml"


def test_plain_table_never_cuts_a_column() -> None:
    long = "locked by rollback 20261205T070000Z-ordergw-1a2b (alice@ctl); differs from majority (5.2.0)" * 3
    text = plain(
        ("host", "installed", "attention"), [("ny5-oe01", "5.1.0", long), ("ny5-oe02", "5.2.0", "-")], [True, False]
    )
    lines = text.splitlines()
    assert lines[1].startswith("! ny5-oe01") and lines[1].endswith(long)
    assert lines[2].startswith("  ny5-oe02") and not lines[2].endswith(" ")
    assert lines[0].index("attention") == lines[1].index("locked")  # columns line up


def test_runs_json_lists_damaged_runs_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    good = Journal.create(state, "20261205T070000Z-ordergw-0001")
    good.record(Event.RUN_START, kind="apply", component="ordergw", operator="ann@ctl")
    good.record(Event.RUN_END, status="succeeded", exit_code=0)
    bad = Journal.create(state, "20261205T080000Z-ordergw-0002")
    bad.path.write_bytes(b"\xff\xfe{not json\n")
    assert main(["--state-dir", str(state), "runs", "--format", "json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert (runs[0]["run_id"][-4:], runs[0]["status"], runs[0]["exit_code"]) == ("0001", "succeeded", 0)
    assert runs[1]["problem"] and runs[1]["run_id"].endswith("0002")


def test_validate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(PLAYBOOK), "-i", str(INVENTORY), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "problems": []}
    broken = tmp_path / "pb.yml"
    broken.write_text(PLAYBOOK.read_text().replace('version: "5.2.0"', 'version: "5.2.0; rm -rf /"'))
    assert main(["validate", str(broken), "-i", str(INVENTORY), "--format", "json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["problems"][0]["file"] == str(broken)
    assert isinstance(out["problems"][0]["line"], int) and out["problems"][0]["message"]


def test_diff_json_and_exit_status(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(PLAYBOOK, "pb.yml")
    shutil.copy(INVENTORY, "inv.yml")
    assert main(["plan", "pb.yml", "-i", "inv.yml", "--offline", "--out", "a.json"]) == 0
    Path("inv.yml").write_text(Path("inv.yml").read_text().replace("canary: true", "canary: false", 1))
    assert main(["plan", "pb.yml", "-i", "inv.yml", "--offline", "--out", "b.json"]) == 0
    capsys.readouterr()
    assert main(["diff", "a.json", "a.json", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["same"] is True
    assert main(["diff", "a.json", "b.json", "--format", "json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["same"] is False and out["differences"] and out["old"] != out["new"]
