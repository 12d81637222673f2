"""`validate` catches an artifact in the store whose sha256 is not the playbook's, at the playbook's line."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from upgrader.cli.main import main

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "playbooks" / "ordergw-5.2.0.yml"  # a target and a `via` hop: two artifacts
INVENTORY = REPO / "inventories" / "prod-na.yml"
CONTENT = b"a release tarball stands in here\n" * 8


def _setup(tmp: Path) -> tuple[Path, dict[str, Any]]:
    store = tmp / "store"
    store.mkdir(exist_ok=True)
    spec = yaml.safe_load(PLAYBOOK.read_text())
    digest = hashlib.sha256(CONTENT).hexdigest()
    text = PLAYBOOK.read_text()
    for art in [spec["artifact"], *(hop["artifact"] for hop in spec["via"])]:
        (store / art["file"]).write_bytes(CONTENT)
        text = text.replace(art["sha256"], digest)
    (tmp / "playbook.yml").write_text(text)
    shutil.copy(INVENTORY, tmp / "inventory.yml")
    return store, spec


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


@pytest.mark.reliability(
    "validate with an artifact in the store whose bytes differ from the playbook's sha256",
    "exit 1, one error[bad-input] line at the playbook's sha256 line naming the file; the "
    "untouched artifact is no problem",
)
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(offset=st.integers(0, len(CONTENT) - 1), flip=st.integers(1, 255), hop=st.booleans())
def test_a_changed_artifact_in_the_store_is_a_located_problem(
    tmp_path: Path, offset: int, flip: int, hop: bool, capsys: pytest.CaptureFixture[str], record_property: Any
) -> None:
    store, spec = _setup(tmp_path)
    argv = [
        "validate",
        str(tmp_path / "playbook.yml"),
        "-i",
        str(tmp_path / "inventory.yml"),
        "--artifacts",
        str(store),
    ]
    assert main(argv) == 0
    capsys.readouterr()
    art = spec["via"][0]["artifact"] if hop else spec["artifact"]
    data = bytearray(CONTENT)
    data[offset] ^= flip
    (store / art["file"]).write_bytes(bytes(data))
    assert main(argv) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    file_line = _line_of(tmp_path / "playbook.yml", f"file: {art['file']}") + 1  # sha256 follows file
    assert line.startswith(f"error[bad-input]: {tmp_path / 'playbook.yml'}:{file_line}:"), line
    assert art["file"] in line and hashlib.sha256(data).hexdigest() in line
    record_property("observed", f"exit 1: {line.split(': ', 1)[1][:140]}")


def test_an_artifact_not_in_the_store_is_not_validates_business(tmp_path: Path) -> None:
    store, spec = _setup(tmp_path)
    (store / spec["artifact"]["file"]).unlink()
    assert (
        main(
            [
                "validate",
                str(tmp_path / "playbook.yml"),
                "-i",
                str(tmp_path / "inventory.yml"),
                "--artifacts",
                str(store),
            ]
        )
        == 0
    )
