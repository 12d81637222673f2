"""`upgrader schema KIND` prints a JSON Schema that editors can use, and the shipped files satisfy it."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.unit.conftest import INVENTORY, PLAYBOOKS
from upgrader.cli.main import main

jsonschema = pytest.importorskip("jsonschema")


def schema(kind: str, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["schema", kind]) == 0
    out = capsys.readouterr().out
    return json.loads(out)


@pytest.mark.parametrize("kind", ["playbook", "inventory", "facts"])
def test_schema_is_valid_json_schema(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = schema(kind, capsys)
    assert data["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert data["type"] == "object" and data["additionalProperties"] is False
    jsonschema.Draft202012Validator.check_schema(data)


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda p: p.stem)
def test_shipped_playbooks_satisfy_the_schema(playbook, capsys: pytest.CaptureFixture[str]) -> None:
    validator = jsonschema.Draft202012Validator(schema("playbook", capsys))
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(yaml.safe_load(playbook.read_text()))]
    assert errors == []


def test_shipped_inventory_satisfies_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    validator = jsonschema.Draft202012Validator(schema("inventory", capsys))
    assert [e.message for e in validator.iter_errors(yaml.safe_load(INVENTORY.read_text()))] == []


def test_schema_rejects_what_validation_rejects(capsys: pytest.CaptureFixture[str]) -> None:
    validator = jsonschema.Draft202012Validator(schema("playbook", capsys))
    data = yaml.safe_load(PLAYBOOKS[0].read_text())
    data["upgrade_form"] = data.pop("upgrade_from")
    data["artifact"]["sha256"] = "abc"
    data["component"] = "Order GW"
    data["canary"]["bake"] = "eight seconds"
    messages = " ".join(e.message for e in validator.iter_errors(data))
    for word in ("upgrade_form", "upgrade_from", "'abc'", "'Order GW'", "'eight seconds'"):
        assert word in messages
