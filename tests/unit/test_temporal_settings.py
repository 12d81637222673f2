"""Where `--engine temporal` finds its server: flags, then UPGRADER_TEMPORAL_*, then the inventory, field by field."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from upgrader.cli.main import main
from upgrader.errors import RefusedError
from upgrader.models.inventory import Inventory
from upgrader.temporal import settings
from upgrader.temporal.client import workflow_id


def inventory(**temporal: object) -> Inventory:
    data: dict[str, object] = {"name": "lab", "datacenters": {"ny5": {"hosts": {"ny5-1": {"address": "10.0.0.1"}}}}}
    if temporal:
        data["engine"] = {"temporal": temporal}
    return Inventory.model_validate(data)


def flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags_win_over_the_environment_which_wins_over_the_inventory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    inv = inventory(address="temporal.desk:7233", namespace="desk", tls_ca="ca.pem")
    path = tmp_path / "inv.yml"
    found = settings.resolve(flags(), inv, path)
    assert (found.address, found.namespace, found.tls_ca) == ("temporal.desk:7233", "desk", tmp_path / "ca.pem")
    assert found.tls  # a CA turns TLS on
    monkeypatch.setenv("UPGRADER_TEMPORAL_ADDRESS", "10.1.1.1:7233")
    assert settings.resolve(flags(), inv, path).address == "10.1.1.1:7233"
    found = settings.resolve(flags("--temporal-address", "127.0.0.1:7233"), inv, path)
    assert (found.address, found.namespace) == ("127.0.0.1:7233", "desk")  # the other fields still come through


def test_refused_without_an_address_or_with_half_a_client_certificate(tmp_path: Path) -> None:
    with pytest.raises(RefusedError, match="needs the server's address"):
        settings.resolve(flags(), inventory(), tmp_path / "inv.yml")
    with pytest.raises(RefusedError, match="needs its key"):
        settings.resolve(
            flags("--temporal-address", "h:1", "--temporal-tls-cert", "c.pem"), inventory(), tmp_path / "inv.yml"
        )


def test_a_recorded_run_names_its_server_and_the_environment_can_move_it(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: dict[str, object] = dict(settings.to_record(settings.Settings("h:7233", "desk", Path("/etc/ca.pem"))))
    assert settings.of_record(recorded) == settings.Settings("h:7233", "desk", Path("/etc/ca.pem"))
    monkeypatch.setenv("UPGRADER_TEMPORAL_ADDRESS", "new:7233")
    assert settings.of_record(recorded).address == "new:7233"


@pytest.mark.parametrize("address", ["temporal", "host:port", ":7233", "a b:1", "h:7233/x"])
def test_the_inventory_refuses_an_address_without_a_port(address: str) -> None:
    with pytest.raises(ValueError):
        inventory(address=address)


def test_the_workflow_id_is_one_per_component_and_inventory() -> None:
    assert workflow_id("ordergw", "prod-na") == workflow_id("ordergw", "prod-na") == "upgrade-ordergw-prod-na"
    assert workflow_id("ordergw", "prod-na") != workflow_id("ordergw", "prod-eu")
    assert "/" not in workflow_id("a/b", "c d")


def test_a_worker_needs_a_known_datacenter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "inv.yml"
    inv.write_text(
        "name: lab\ndefaults: {user: deploy}\ndatacenters:\n  ny5:\n    hosts:\n      ny5-1: {address: 10.0.0.1}\n"
    )
    assert main(["--state-dir", str(tmp_path), "worker", "-i", str(inv), "--datacenter", "zz9"]) == 1
    assert "no datacenter zz9" in capsys.readouterr().err
