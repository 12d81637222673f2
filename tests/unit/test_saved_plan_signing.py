"""Optional plan signatures: `plan --out` signs with a key, `apply` refuses a plan without a valid signature."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_saved_plan import INVENTORY, PLAYBOOK, reseal
from upgrader.cli.main import main
from upgrader.planning import signing

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def signed(in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    monkeypatch.setenv("UPGRADER_STATE_DIR", str(in_tmp / "state"))
    monkeypatch.delenv(signing.ENV, raising=False)
    shutil.copy(PLAYBOOK, in_tmp / "playbook.yml")
    shutil.copy(INVENTORY, in_tmp / "inventory.yml")
    (in_tmp / "key").write_text(KEY + "\n")
    assert (
        main(["plan", "playbook.yml", "-i", "inventory.yml", "--offline", "--out", "plan.json", "--plan-key", "key"])
        == 0
    )
    capsys.readouterr()
    return in_tmp / "plan.json"


def apply_signed(plan: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["apply", str(plan), "-i", "inventory.yml", "--yes", *extra])
    return code, capsys.readouterr().err


def test_a_signed_plan_passes_with_the_key(
    signed: Path,
    connections: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sig = signing.signature_path(signed).read_text().strip()
    assert sig.startswith("hmac-sha256:") and len(sig) == len("hmac-sha256:") + 64
    code, err = apply_signed(signed, capsys, "--plan-key", "key")
    assert (code, connections) == (1, ["pool"]) and "reached the pool" in err, err  # past every check


def test_the_key_may_come_from_the_environment(
    signed: Path,
    connections: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(signing.ENV, KEY)
    code, err = apply_signed(signed, capsys)
    assert (code, connections) == (1, ["pool"]), err


@pytest.mark.reliability
@pytest.mark.parametrize(
    "damage", ["missing", "edited plan", "edited operation", "edited program", "other key", "garbage"]
)
def test_a_bad_signature_is_refused_before_anything(
    signed: Path,
    connections: list[str],
    capsys: pytest.CaptureFixture[str],
    damage: str,
    record_property: Any,
) -> None:
    record_property("scenario", f"apply a signed plan with a key configured: signature {damage}")
    record_property("expected", "refused before any connection; exit 1")
    sig = signing.signature_path(signed)
    if damage == "missing":
        sig.unlink()
    elif damage == "edited plan":
        reseal(signed, lambda d: d["spec"]["canary"].update(bake=0.0))
    elif damage == "edited operation":  # written once in the table, run by every host whose program names it
        reseal(signed, lambda d: _op(d, "migrate").update(argv=["/bin/sh", "-c", "id > /tmp/owned"]))
    elif damage == "edited program":  # a start no longer confirmed by its verify (which its own step still runs)
        reseal(signed, lambda d: next(s for s in d["programs"][0] if "verify" in s).pop("verify"))
    elif damage == "other key":
        (signed.parent / "key").write_text("another-secret-of-enough-length")
    else:
        sig.write_bytes(b"\xff\xfe not a signature")
    code, err = apply_signed(signed, capsys, "--plan-key", "key")
    assert code == 1 and ("signature" in err), err
    assert connections == []
    record_property("observed", f"exit {code}, {len(connections)} connection(s): {err.strip()[:120]}")


def _op(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(op for op in data["operations"] if op["op"] == name)


def test_reindenting_keeps_the_signature(
    signed: Path,
    connections: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    signed.write_text(json.dumps(json.loads(signed.read_text()), indent=4))
    code, err = apply_signed(signed, capsys, "--plan-key", "key")
    assert (code, connections) == (1, ["pool"]), err


def test_a_short_or_unreadable_key_is_refused(
    signed: Path,
    connections: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (signed.parent / "key").write_text("short")
    code, err = apply_signed(signed, capsys, "--plan-key", "key")
    assert code == 1 and "at least 16" in err, err
    code, err = apply_signed(signed, capsys, "--plan-key", "nokey")
    assert code == 1 and "cannot read plan key nokey" in err, err
    assert connections == []
