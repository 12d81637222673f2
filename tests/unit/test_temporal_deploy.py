"""The workers as deployed: the systemd units (examples/systemd/) and the datacenter queues' activity rate limit."""

from __future__ import annotations

import asyncio
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tests.temporal_server import DevServer
from tests.unit.test_plan_ops import CASES
from upgrader.cli.main import build_parser, main
from upgrader.loading.inputs import load_inventory
from upgrader.temporal import limits, worker

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "examples" / "systemd"
DC_UNIT, CONTROL_UNIT = UNITS / "upgrader-worker@.service", UNITS / "upgrader-control-worker.service"
BINARY = "/opt/upgrader/bin/upgrader"  # where the units expect the install (a venv's script)


def service(unit: Path) -> dict[str, str]:
    """The [Service] section's settings (each key once in these units)."""
    out: dict[str, str] = {}
    section = ""
    for line in unit.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert key not in out, f"{unit.name}: {key} twice"
            out[key] = value
    return out


def env_example() -> dict[str, str]:
    lines = (UNITS / "upgrader.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def exec_start(unit: Path, instance: str, etc: Path, state: Path, credentials: Path) -> list[str]:
    """The unit's ExecStart as systemd runs it: specifiers and $VARIABLES (unbraced: split on spaces) expanded."""
    line = service(unit)["ExecStart"]
    line = line.replace("%i", instance).replace("%S", str(state)).replace("%d", str(credentials))
    line = line.replace("/etc/upgrader", str(etc))
    words = []
    for word in shlex.split(line):
        if word.startswith("$"):
            words += env_example().get(word[1:], "").split()
        else:
            words.append(word)
    return words


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    """`systemd-analyze verify` on a copy naming an installed upgrader (it checks the binary exists), and on a
    copy with one misspelled directive, to show it would have said so."""
    script = Path(sys.executable).parent / "upgrader"
    assert script.exists(), "pip install -e . provides the upgrader script"
    for unit in (DC_UNIT, CONTROL_UNIT):
        (tmp_path / unit.name).write_text(unit.read_text().replace(BINARY, str(script)))
    instance = tmp_path / "upgrader-worker@ny5.service"
    checked = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(instance), str(tmp_path / CONTROL_UNIT.name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
    broken = tmp_path / "broken" / "upgrader-control-worker.service"
    broken.parent.mkdir()
    broken.write_text(
        (tmp_path / CONTROL_UNIT.name).read_text().replace("ProtectSystem=strict", "ProtectSistem=strict")
    )
    told = subprocess.run(["systemd-analyze", "verify", "--man=no", str(broken)], capture_output=True, text=True)
    assert "ProtectSistem" in told.stderr


def test_the_units_are_hardened_and_stop_after_the_workers_grace() -> None:
    for unit in (DC_UNIT, CONTROL_UNIT):
        found = service(unit)
        assert found["User"] == "upgrader" and found["NoNewPrivileges"] == "yes", unit.name
        assert found["ProtectSystem"] == "strict" and found["ProtectHome"] == "yes" and found["PrivateTmp"] == "yes"
        assert found["CapabilityBoundingSet"] == "" and found["KillSignal"] == "SIGTERM"
        assert found["ExecStart"].startswith(BINARY + " ")
    stop = service(DC_UNIT)["TimeoutStopSec"]
    assert stop.endswith("min") and int(stop[:-3]) * 60 > worker.GRACE.total_seconds()  # no host killed mid-step
    assert "plan-key" in service(DC_UNIT)["LoadCredential"] and "LoadCredential" not in service(CONTROL_UNIT)


@pytest.mark.parametrize(("unit", "expected"), [(DC_UNIT, (["ny"], False)), (CONTROL_UNIT, ([], True))])
def test_the_units_command_line_runs_the_real_cli_up_to_the_server(
    unit: Path,
    expected: tuple[list[str], bool],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """ExecStart, expanded with the example environment file, parses with the real parser and runs the real
    `worker` command until it asks the server (which here refuses: no server is asked)."""
    etc, state, credentials = tmp_path / "etc", tmp_path / "state", tmp_path / "credentials"
    etc.mkdir()
    credentials.mkdir()
    (etc / "inventory.yml").write_text((CASES / "two_dcs_order_pause" / "inventory.yml").read_text())
    (credentials / "plan-key").write_text("0123456789abcdef0123456789abcdef\n")
    argv = exec_start(unit, "ny", etc, state, credentials)  # a datacenter of the case's inventory
    assert argv[0] == BINARY
    args = build_parser(argv[1:]).parse_args(argv[1:])
    assert (args.command, args.datacenter, args.control) == ("worker", *expected)
    assert args.activities_per_second == limits.QUEUE_ACTIVITIES_PER_SECOND and args.parallel == 32
    for name in ("UPGRADER_TEMPORAL_ADDRESS", "UPGRADER_TEMPORAL_NAMESPACE"):  # the TLS files do not exist here
        monkeypatch.setenv(name, env_example()[name])
    asked: dict[str, Any] = {}

    async def refuse(address: str, **kwargs: Any) -> Any:
        asked.update(kwargs, address=address)
        raise RuntimeError("no server in this test")

    monkeypatch.setattr(Client, "connect", refuse)
    assert main(argv[1:]) == 1
    assert "cannot reach the Temporal server at temporal.desk.example:7233" in capsys.readouterr().err
    assert (asked["address"], asked["namespace"]) == ("temporal.desk.example:7233", "upgrades")


# ---------------------------------------------------------------- per-queue activity rate limits


def test_the_datacenter_workers_carry_the_queue_rate_and_the_control_worker_none(temporal_server: DevServer) -> None:
    inventory = load_inventory(CASES / "two_dcs_order_pause" / "inventory.yml")

    async def configs(rate: worker.Rate | None) -> list[dict[str, Any]]:
        client = await Client.connect(temporal_server.address)
        made = worker.workers(
            client,
            inventory,
            datacenters=["ny5"],
            control=True,
            state_dir=Path("."),
            plan_key=b"0123456789abcdef0123",
            rate=rate,
        )
        return [dict(w.config()) for w in made]

    dc, control = asyncio.run(configs(None))
    assert dc["max_task_queue_activities_per_second"] == limits.QUEUE_ACTIVITIES_PER_SECOND
    assert dc["max_activities_per_second"] is None
    assert control.get("max_task_queue_activities_per_second") is None  # journals and admission: never throttled
    dc, _ = asyncio.run(configs(worker.Rate(queue=5.0, worker=2.0)))
    assert (dc["max_task_queue_activities_per_second"], dc["max_activities_per_second"]) == (5.0, 2.0)
    dc, _ = asyncio.run(configs(worker.Rate(queue=None)))
    assert dc["max_task_queue_activities_per_second"] is None


@pytest.mark.parametrize(
    ("value", "parsed"), [("25", 25.0), ("0.5", 0.5), ("0", None), ("-1", "usage"), ("nan", "usage"), ("x", "usage")]
)
def test_the_rate_flags(value: str, parsed: object, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["worker", "-i", "inv.yml", "--datacenter", "ny5", "--activities-per-second", value]
    if parsed == "usage":
        with pytest.raises(SystemExit) as exited:
            build_parser(argv).parse_args(argv)
        assert exited.value.code == 2 and "not a rate" in capsys.readouterr().err
    else:
        assert build_parser(argv).parse_args(argv).activities_per_second == parsed
