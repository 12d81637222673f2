"""The state directory is trusted only as far as it is protected (issue 25 §5).

A connections record steers `rollback` and `apply` before anything is validated.  Each test plants or
loosens one, runs the real early start, and counts the TCP connections a loopback listener accepts:
a refused record must open none.  The control (the genuine record) opens at least one, so the count
can fail.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from upgrader import __version__
from upgrader.commands import early
from upgrader.engine.endpoints import endpoints
from upgrader.loading.inputs import load_inventory
from upgrader.windows import markets

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "inventories" / "prod-na.yml"  # TEST-NET addresses: nothing may connect to them


def _loopback_inventory(tmp_path: Path, port: int) -> Path:
    """An inventory of one ordergw host at 127.0.0.1:``port``, no jump host, an empty known_hosts."""
    known = tmp_path / "known_hosts"
    known.write_text("")
    data = {
        "name": "loopback",
        "known_hosts": str(known),
        "defaults": {"user": "nobody"},
        "roles": {"oe": ["ordergw"]},
        "datacenters": {"ny5": {"hosts": {"ny5-oe01": {"address": "127.0.0.1", "port": port, "roles": ["oe"]}}}},
    }
    path = tmp_path / "loopback.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict[str, object]]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    port = server.getsockname()[1]
    inventory = _loopback_inventory(tmp_path, port)
    state = tmp_path / "state"
    inv = load_inventory(inventory)
    early.remember(state, inv.sha256, inv.model, endpoints(inv.model, inv.path))
    began: list[early.Started | None] = []
    yield {
        "began": began,
        "server": server,
        "port": port,
        "inventory": inventory,
        "state": state,
        "record": early.record_path(state, inv.sha256),
    }
    for started in began:
        if started is not None:
            started.pool.close()
    server.close()


def _accepts(server: socket.socket, wait: float = 1.0) -> int:
    """Connections the listener accepts within ``wait`` seconds of the last one."""
    server.settimeout(wait)
    count = 0
    try:
        while True:
            conn, _ = server.accept()
            conn.close()
            count += 1
            server.settimeout(0.2)
    except TimeoutError:
        return count


def _rollback(inventory: Path, state: Path, began: list[early.Started | None]) -> float:
    started = time.monotonic()
    argv = ["rollback", "ordergw", "-i", str(inventory), "--reason", "drill", "--connect-timeout", "1"]
    began.append(early.start(argv, state))
    return time.monotonic() - started


def test_the_genuine_record_connects_early_with_host_keys_checked(lab: dict, record_property) -> None:  # type: ignore[no-untyped-def]
    """The control: the tests below would see a connection if the refusal did not hold."""
    _rollback(lab["inventory"], lab["state"], lab["began"])
    pool = lab["began"][0].pool
    started = [pool.endpoint(h) for h in pool.sessions()]
    seen = _accepts(lab["server"])
    record_property("observed", f"{seen} connection(s); strict_host_keys {[e.strict_host_keys for e in started]}")
    assert seen >= 1
    assert all(e.strict_host_keys and e.known_hosts == str(lab["inventory"].parent / "known_hosts") for e in started)


def _chmod(mode: int) -> Callable[[dict], str]:
    def tamper(lab: dict) -> str:
        os.chmod(lab["record"], mode)
        return f"record mode {mode:04o}"

    return tamper


def _chown(lab: dict) -> str:
    os.chown(lab["record"], 65534, 65534)
    return "record owned by uid 65534"


def _loose_dir(lab: dict) -> str:
    os.chmod(lab["record"].parent, 0o770)
    return "connections/ mode 0770"


def _loose_state(lab: dict) -> str:
    os.chmod(lab["state"], 0o777)
    return "state dir mode 0777"


def _foreign_dir_owner(lab: dict) -> str:
    os.chown(lab["record"].parent, 65534, 65534)
    return "connections/ owned by uid 65534"


def _symlink(lab: dict) -> str:
    real = lab["state"] / "elsewhere.json"
    os.replace(lab["record"], real)
    os.symlink(real, lab["record"])
    return "record is a symlink to a genuine record"


def _fifo(lab: dict) -> str:
    os.unlink(lab["record"])
    os.mkfifo(lab["record"], 0o600)
    return "record is a FIFO"


def _no_host_keys(lab: dict) -> str:
    record = json.loads(lab["record"].read_text())
    for host in record["hosts"].values():
        host["endpoint"]["strict_host_keys"] = False
        host["endpoint"]["known_hosts"] = "/dev/null"
    lab["record"].write_text(json.dumps(record))
    return "record says strict_host_keys false, known_hosts /dev/null"


TAMPERING = {
    "mode 0644": _chmod(0o644),
    "mode 0640": _chmod(0o640),
    "other owner": _chown,
    "group-writable dir": _loose_dir,
    "world-writable state": _loose_state,
    "dir of another user": _foreign_dir_owner,
    "symlink": _symlink,
    "fifo": _fifo,
    "host keys off": _no_host_keys,
}


@pytest.mark.reliability(
    "a connections record that is not the operator's own private file, or that turns host-key "
    "checking off (as root: owner uid 65534, modes, symlink, FIFO)",
    "ignored with a warning: no TCP connection, nothing started",
)
@pytest.mark.parametrize("how", sorted(TAMPERING))
def test_a_record_that_is_not_protected_opens_no_connection(
    lab: dict,
    how: str,
    record_property,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    what = TAMPERING[how](lab)
    with caplog.at_level(logging.WARNING):
        seconds = _rollback(lab["inventory"], lab["state"], lab["began"])
    seen = _accepts(lab["server"])
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    record_property(
        "observed",
        f"{what}: {seen} connection(s), early start {seconds:.2f} s; warning: {warned[0][:140] if warned else 'none'}",
    )
    assert seen == 0 and lab["began"] == [None]
    assert warned and "ignoring" in warned[0]


@pytest.mark.reliability(
    "a planted record, the operator's own and 0600, sends every host of a real inventory to "
    "an endpoint the inventory never names (a loopback listener)",
    "ignored with a warning: no connection to the foreign endpoint",
)
def test_a_record_naming_a_foreign_endpoint_opens_no_connection(
    lab: dict,
    record_property,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    inv = load_inventory(INVENTORY)
    foreign = {
        h: dataclasses.replace(e, address="127.0.0.1", port=lab["port"], jump=None, strict_host_keys=False)
        for h, e in endpoints(inv.model, inv.path).items()
    }
    early.remember(lab["state"], inv.sha256, inv.model, foreign)  # written as upgrader writes: 0600, 0700 dirs
    path = early.record_path(lab["state"], inv.sha256)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with caplog.at_level(logging.WARNING):
        _rollback(INVENTORY, lab["state"], lab["began"])
    seen = _accepts(lab["server"])
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    record_property(
        "observed", f"{seen} connection(s) to the foreign endpoint; warning: {warned[0][:160] if warned else 'none'}"
    )
    assert seen == 0 and lab["began"] == [None]
    assert warned and "does not describe the inventory" in warned[0]


def test_remember_replaces_a_tampered_record(lab: dict) -> None:
    _chmod(0o644)(lab)
    inv = load_inventory(lab["inventory"])
    early.remember(lab["state"], inv.sha256, inv.model, endpoints(inv.model, inv.path))
    assert lab["record"].stat().st_mode & 0o777 == 0o600
    _rollback(lab["inventory"], lab["state"], lab["began"])
    assert _accepts(lab["server"]) >= 1


@pytest.mark.parametrize(
    "inventory", [INVENTORY, REPO / "inventories" / "vagrant.yml", REPO / "tests" / "unit" / "inputs" / "inventory.yml"]
)
def test_the_early_derivation_of_hosts_equals_the_validated_one(inventory: Path, tmp_path: Path) -> None:
    """early.inventory_hosts (no models) gives exactly what remember records from the validated inventory."""
    if not inventory.exists():
        pytest.skip(f"{inventory} not generated here")
    inv = load_inventory(inventory)
    early.remember(tmp_path, inv.sha256, inv.model, endpoints(inv.model, inv.path))
    record = json.loads(early.record_path(tmp_path, inv.sha256).read_text())
    assert record == {"upgrader": __version__, "hosts": early.inventory_hosts(inventory.read_bytes(), inventory)}


# ---------------------------------------------------------------- the market calendar cache


@pytest.mark.reliability(
    "a planted market calendar cache (no sessions: the market never opens) owned by uid 65534 or mode 0644",
    "ignored and rebuilt from exchange_calendars; the real sessions are used",
)
@pytest.mark.parametrize("how", ["other owner", "mode 0644"])
def test_a_planted_calendar_cache_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, record_property
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("UPGRADER_CACHE_DIR", str(tmp_path))
    markets._month.cache_clear()
    path = markets.cache_dir() / "XNYS-2026-12.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"tz": "America/New_York", "sessions": []}))
    if how == "other owner":
        os.chmod(path, 0o600)
        os.chown(path, 65534, 65534)
    else:
        os.chmod(path, 0o644)
    sessions = markets._month("XNYS", 2026, 12)["sessions"]
    markets._month.cache_clear()
    record_property(
        "observed",
        f"{how}: {len(sessions)} sessions used for XNYS 2026-12 (planted: 0); "
        f"rewritten mode {path.stat().st_mode & 0o777:04o}, uid {path.stat().st_uid}",
    )
    assert len(sessions) >= 20
    assert path.stat().st_uid == os.geteuid() and path.stat().st_mode & 0o777 == 0o600
