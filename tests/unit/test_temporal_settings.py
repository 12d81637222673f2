"""Where `--engine temporal` finds its server: flags, then UPGRADER_TEMPORAL_*, then the inventory, field by field."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

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


# ---------------------------------------------------------------- issue 27 §3: API key and TLS server name

# keys as issued (printable, no spaces); marked so that a short draw cannot be a substring of a field name
KEYS = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=64).map(
    lambda k: "k3y." + k
)


@examples(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(key=KEYS)
def test_the_api_key_is_never_printed_nor_recorded(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """From the environment only (never a flag, which `ps` shows): not in the settings' repr, not in the
    run's journal record, and found again from the environment for a recorded run."""
    monkeypatch.setenv(settings.API_KEY_ENV, key)
    found = settings.resolve(flags("--temporal-address", "temporal.example:7233"), inventory(), Path("inv.yml"))
    assert found.read_api_key() == key and found.tls  # a bearer token never crosses in clear
    recorded = settings.to_record(found)
    assert key not in repr(found) and key not in str(found) and key not in json.dumps(recorded)
    assert settings.of_record(recorded).read_api_key() == key
    monkeypatch.delenv(settings.API_KEY_ENV)
    assert settings.of_record(recorded).read_api_key() is None


def test_the_api_key_file_and_server_name_come_from_flags_env_or_inventory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "temporal.key").write_text("secret-from-file\n")
    inv = inventory(address="10.1.1.1:7233", api_key_file="temporal.key", tls_server_name="temporal.desk")
    found = settings.resolve(flags(), inv, tmp_path / "inv.yml")
    assert (found.api_key_file, found.tls_server_name) == (tmp_path / "temporal.key", "temporal.desk")
    assert found.read_api_key() == "secret-from-file" and found.tls
    assert settings.of_record(settings.to_record(found)).api_key_file == tmp_path / "temporal.key"
    monkeypatch.setenv("UPGRADER_TEMPORAL_TLS_SERVER_NAME", "frontend.internal")
    assert settings.resolve(flags(), inv, tmp_path / "inv.yml").tls_server_name == "frontend.internal"
    found = settings.resolve(flags("--temporal-tls-server-name", "x.example"), inv, tmp_path / "inv.yml")
    assert found.tls_server_name == "x.example"
    assert settings.Settings("h:1", tls_server_name="h.example").tls  # a server name alone turns TLS on
    with pytest.raises(RefusedError, match="cannot read the Temporal API key file"):
        settings.Settings("h:1", api_key_file=tmp_path / "missing").read_api_key()


@pytest.mark.parametrize("name", ["", "a b", "-x", "x/y", "x" * 300])
def test_the_inventory_refuses_a_bad_server_name(name: str) -> None:
    with pytest.raises(ValueError):
        inventory(address="h:1", tls_server_name=name)


class Connected(Exception):
    """What the stand-in for Client.connect raises: the arguments it was given (no server is asked)."""


def test_connect_sends_the_key_as_metadata_and_the_server_name_for_tls(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from temporalio.client import Client

    from upgrader.temporal.client import connect

    got: dict[str, Any] = {}

    async def fake(address: str, **kwargs: Any) -> Any:
        got.update(kwargs, address=address)
        raise RuntimeError("no server here")

    monkeypatch.setattr(Client, "connect", fake)
    monkeypatch.setenv(settings.API_KEY_ENV, "tok-0123456789")
    found = settings.resolve(
        flags("--temporal-address", "10.9.9.9:7233", "--temporal-tls-server-name", "temporal.desk"),
        inventory(),
        Path("i"),
    )
    with pytest.raises(RefusedError, match="cannot reach"):
        asyncio.run(connect(found))
    assert got["api_key"] == "tok-0123456789" and got["tls"].domain == "temporal.desk"
    out = capsys.readouterr()
    assert "tok-0123456789" not in out.out + out.err
    assert "without TLS" not in out.err  # TLS is on: no plaintext warning


def _refused_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    from temporalio.client import Client

    async def fake(address: str, **kwargs: Any) -> Any:
        raise RuntimeError("no server here")

    monkeypatch.setattr(Client, "connect", fake)


@pytest.mark.parametrize(
    "command",
    [
        ["runs", "--engine", "temporal"],
        ["worker", "--control"],
    ],
)
def test_every_client_and_worker_connect_warns_of_plaintext_to_a_remote_server(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One connect (temporal/client.py) for every command; no other module calls Client.connect."""
    _refused_connect(monkeypatch)
    inv = tmp_path / "inv.yml"
    inv.write_text(
        "name: lab\ndefaults: {user: deploy}\ndatacenters:\n  ny5:\n    hosts:\n      ny5-1: {address: 10.0.0.1}\n"
    )
    argv = ["--state-dir", str(tmp_path), *command, "-i", str(inv), "--temporal-address", "10.9.9.9:7233"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "reached without TLS" in err and "cannot reach the Temporal server" in err
    callers = [
        p.relative_to(REPO)
        for p in (REPO / "upgrader").rglob("*.py")
        if "Client.connect(" in p.read_text() and p.name != "client.py"
    ]
    assert callers == []


REPO = Path(__file__).resolve().parents[2]
