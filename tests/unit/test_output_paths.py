"""One policy for every output path (issue 25 §6): upgrader never creates a directory an option names.

Each command that writes a file is given a path under a directory that does not exist; each must refuse
with exit 1 before any work, naming the path, and leave nothing behind.  The module's one writer
(loading/output.write_text) is held to the same rule.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from upgrader.cli.main import main
from upgrader.errors import RefusedError
from upgrader.loading import output

REPO = Path(__file__).resolve().parents[2]
INPUTS = Path(__file__).parent / "inputs"
JOURNALS = Path(__file__).parent / "data" / "journals"
PLAYBOOK = REPO / "playbooks" / "ordergw-5.2.0.yml"
INVENTORY = REPO / "inventories" / "prod-na.yml"


def _commands(tmp: Path) -> dict[str, list[str]]:
    missing = tmp / "no" / "such"
    run = sorted(p.name for p in JOURNALS.iterdir())[0] if JOURNALS.is_dir() else "x"
    return {
        "plan --out": ["plan", str(PLAYBOOK), "-i", str(INVENTORY), "--offline", "--out", str(missing / "plan.json")],
        "report --out": ["report", run, "--out", str(missing / "r.html")],
        "report --metrics": ["report", run, "--metrics", str(missing)],
        "schedule --unit-dir": [
            "schedule",
            str(PLAYBOOK),
            "-i",
            str(INVENTORY),
            "--at",
            "Sat 02:00 America/New_York",
            "--unit-dir",
            str(missing),
        ],
        "audit --metrics-dir": ["audit", "-i", str(INVENTORY), str(PLAYBOOK), "--metrics-dir", str(missing)],
        "facts --out": ["facts", "-i", str(INVENTORY), str(PLAYBOOK), "--out", str(missing / "facts.json")],
    }


@pytest.mark.reliability(
    "an output path under a directory that does not exist, for every command that writes a "
    "file (plan/facts/report --out, report --metrics, schedule --unit-dir, audit --metrics-dir)",
    "exit 1 before any work naming the path; no directory created",
)
@pytest.mark.parametrize("which", sorted(_commands(Path("/x"))))
def test_no_command_creates_a_missing_output_directory(
    which: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], record_property: Callable[[str, object], None]
) -> None:
    state = tmp_path / "state"
    if JOURNALS.is_dir():
        shutil.copytree(JOURNALS, state / "runs")
    argv = _commands(tmp_path)[which]
    try:
        code = main(["--state-dir", str(state), *argv])
    except SystemExit as exc:  # a usage error would be a broken test, not the policy
        code = int(exc.code or 0)
    err = capsys.readouterr().err.strip().splitlines()
    record_property(
        "observed",
        f"exit {code}: {err[0][:150] if err else '(nothing)'}; {tmp_path / 'no'} exists: {(tmp_path / 'no').exists()}",
    )
    assert code == 1 and err and "upgrader never creates directories" in " ".join(err)
    assert not (tmp_path / "no").exists()


def test_the_one_writer_never_creates_a_directory(tmp_path: Path) -> None:
    with pytest.raises(RefusedError, match="does not exist"):
        output.write_text(tmp_path / "a" / "b.txt", "x", atomic=True)
    assert not (tmp_path / "a").exists()
    written = output.write_text(tmp_path / "b.prom", "x\n", "--metrics-dir", mode=0o644, atomic=True)
    assert written.read_text() == "x\n" and written.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.prom"]  # the temporary name is gone
