"""Early connections for `rollback` and `apply`: only towards endpoints recorded from the same validated inventory.

No host is contacted here: the agent start is replaced by a recorder, so these tests see which
transports would have connected and which the command adopts or closes.  tests/vm/test_early_start.py
does the same on real hosts.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from upgrader.commands import early
from upgrader.engine import remote
from upgrader.engine.endpoints import Pool, endpoints
from upgrader.loading.inputs import load_inventory
from upgrader.transport import fabric_adapter
from upgrader.transport.base import Timeouts

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "inventories" / "prod-na.yml"  # TEST-NET addresses: nothing may connect to them


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {"connect": [], "close": [], "python": []}

    def start(transport: fabric_adapter.FabricTransport, python: str) -> None:
        seen["python"].append(python)
        seen["connect"].append(transport.endpoint.name)

    monkeypatch.setattr(remote, "start", start)
    monkeypatch.setattr(fabric_adapter.FabricTransport, "close", lambda self: seen["close"].append(
        self.endpoint.name))
    early._started.clear()
    yield seen
    early._started.clear()


def _remembered(state: Path) -> tuple[str, dict]:
    inv = load_inventory(INVENTORY)
    reach = endpoints(inv.model, inv.path)
    early.remember(state, inv.sha256, inv.model, reach)
    return inv.sha256, reach


def _hosts_of(component: str) -> set[str]:
    inv = load_inventory(INVENTORY).model
    return {name for dc in inv.datacenters.values() for name, h in dc.hosts.items()
            if any(component in inv.roles.get(r, ()) for r in h.roles)}


def test_nothing_starts_without_a_record(tmp_path: Path, calls: dict[str, list[str]]) -> None:
    early.start(["rollback", "ordergw", "-i", str(INVENTORY), "--reason", "x"], tmp_path)
    assert early._started == {}


def test_recorded_endpoints_are_adopted_when_they_match(tmp_path: Path, calls: dict[str, list[str]]) -> None:
    sha, reach = _remembered(tmp_path)
    record = json.loads(early.record_path(tmp_path, sha).read_text())
    assert record["hosts"]["ny5-oe01"]["endpoint"] == dataclasses.asdict(reach["ny5-oe01"])
    early.start(["rollback", "ordergw", "-i", str(INVENTORY), "--reason", "x"], tmp_path)
    transports = {h: t for h, (_, t) in early._started["hosts"].items()}
    assert set(transports) == _hosts_of("ordergw")
    _wait_for(calls, len(transports))
    assert sorted(calls["connect"]) == sorted(transports)
    pool = Pool(reach, timeouts=Timeouts.for_options(5.0, None))
    early.adopt(pool, sha, reach, Timeouts.for_options(5.0, None))
    assert pool._transports == transports and calls["close"] == []


def _wait_for(calls: dict[str, list[str]], count: int) -> None:
    deadline = time.monotonic() + 10
    while len(calls["connect"]) < count and time.monotonic() < deadline:  # the starts run in threads
        time.sleep(0.01)


def test_apply_starts_the_hosts_of_its_playbooks_component(tmp_path: Path, calls: dict[str, list[str]]) -> None:
    _remembered(tmp_path)
    playbook = tmp_path / "pb.yml"
    playbook.write_text("# a comment first\ncomponent: riskgw\nversion: 9.9.9\n")
    early.start(["apply", str(playbook), "-i", str(INVENTORY), "--yes", "--python", "/opt/py/bin/python3"], tmp_path)
    assert set(early._started["hosts"]) == _hosts_of("riskgw") != _hosts_of("ordergw")
    _wait_for(calls, len(early._started["hosts"]))
    assert set(calls["python"]) == {"/opt/py/bin/python3"}


def test_apply_of_a_saved_plan_starts_nothing(tmp_path: Path, calls: dict[str, list[str]]) -> None:
    # A saved plan is planned again and compared before anything connects (tests/unit/test_saved_plan.py).
    _remembered(tmp_path)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"schema_version": 1, "component": "ordergw", "hosts": []}))
    early.start(["apply", str(plan), "-i", str(INVENTORY)], tmp_path)
    assert early._started == {} and calls["connect"] == []


@pytest.mark.parametrize("text", ["component: [not, a, name]\n", "- a list\n", "component: x: y: {\n", ""])
def test_apply_of_an_odd_playbook_starts_nothing(tmp_path: Path, calls: dict[str, list[str]], text: str) -> None:
    _remembered(tmp_path)
    playbook = tmp_path / "pb.yml"
    playbook.write_text(text)
    early.start(["apply", str(playbook), "-i", str(INVENTORY)], tmp_path)
    assert early._started == {}


def test_dc_and_hosts_narrow_what_starts(tmp_path: Path, calls: dict[str, list[str]]) -> None:
    _remembered(tmp_path)
    one = sorted(_hosts_of("ordergw"))[0]
    early.start(["rollback", "ordergw", "-i", str(INVENTORY), "--hosts", one], tmp_path)
    assert set(early._started["hosts"]) == {one}


def test_a_changed_inventory_or_timeout_adopts_nothing(tmp_path: Path, calls: dict[str, list[str]]) -> None:
    sha, reach = _remembered(tmp_path)
    early.start(["rollback", "ordergw", "-i", str(INVENTORY), "--connect-timeout", "3"], tmp_path)
    started = set(early._started["hosts"])
    pool = Pool(reach, timeouts=Timeouts.for_options(5.0, None))
    early.adopt(pool, sha, reach, Timeouts.for_options(5.0, None))  # the command ended up with other timeouts
    assert sorted(calls["close"]) == sorted(started) and pool._transports == {}

    early.start(["rollback", "ordergw", "-i", str(INVENTORY)], tmp_path)
    moved = {h: dataclasses.replace(e, address="198.51.100.7") for h, e in reach.items()}
    early.adopt(pool, sha, moved, Timeouts.for_options(5.0, None))  # an endpoint differs: closed unused
    assert pool._transports == {}


@pytest.mark.parametrize("argv", [["rollback"], ["rollback", "--help"], ["status", "-i", "x.yml"],
                                  ["rollback", "c", "-i", "inventories/prod-na.yml", "--connect-timeout", "soon"]])
def test_odd_command_lines_start_nothing_and_print_nothing(tmp_path: Path, calls: dict[str, list[str]],
                                                           capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    _remembered(tmp_path)
    early.start(argv, tmp_path)
    assert early._started == {} and capsys.readouterr() == ("", "")
