"""Early connections for `rollback` and `apply`: only towards endpoints recorded from the same validated inventory.

No host is contacted here: the agent start is replaced by a recorder, so these tests see which
transports would have connected and which the command adopts or closes.  tests/vm/test_early_start.py
does the same on real hosts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from upgrader.cli.main import build_parser, main
from upgrader.commands import early
from upgrader.engine import remote
from upgrader.engine.endpoints import endpoints
from upgrader.engine.pool import Pool
from upgrader.loading.inputs import load_inventory
from upgrader.transport import fabric_adapter
from upgrader.transport.base import Timeouts

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "inventories" / "prod-na.yml"  # TEST-NET addresses: nothing may connect to them


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {"connect": [], "close": [], "python": []}

    def start(session: remote.Session, python: str) -> None:
        seen["python"].append(python)
        seen["connect"].append(session.host)

    monkeypatch.setattr(remote, "start", start)
    monkeypatch.setattr(fabric_adapter.FabricTransport, "close", lambda self: seen["close"].append(self.endpoint.name))
    return seen


def started_hosts(started: early.Started | None) -> set[str]:
    """The hosts an early start began connecting to (none: it started nothing)."""
    return set() if started is None else set(started.pool.sessions())


def _remembered(state: Path) -> tuple[str, dict]:
    inv = load_inventory(INVENTORY)
    reach = endpoints(inv.model, inv.path)
    early.remember(state, inv.sha256, inv.model, reach)
    return inv.sha256, reach


def _hosts_of(component: str) -> set[str]:
    inv = load_inventory(INVENTORY).model
    return {
        name
        for dc in inv.datacenters.values()
        for name, h in dc.hosts.items()
        if any(component in inv.roles.get(r, ()) for r in h.roles)
    }


def test_nothing_starts_without_a_record(tmp_path: Path, calls: dict[str, list[str]]) -> None:
    assert early.start(["rollback", "ordergw", "-i", str(INVENTORY), "--reason", "x"], tmp_path) is None


def test_recorded_endpoints_are_adopted_when_they_match(tmp_path: Path, calls: dict[str, list[str]]) -> None:
    sha, reach = _remembered(tmp_path)
    record = json.loads(early.record_path(tmp_path, sha).read_text())
    assert record["hosts"]["ny5-oe01"]["endpoint"] == dataclasses.asdict(reach["ny5-oe01"])
    started = early.start(["rollback", "ordergw", "-i", str(INVENTORY), "--reason", "x"], tmp_path)
    assert started is not None
    sessions = started.pool.sessions()
    assert set(sessions) == _hosts_of("ordergw")
    _wait_for(calls, len(sessions))
    assert sorted(calls["connect"]) == sorted(sessions)
    pool = Pool(reach, timeouts=Timeouts.for_options(5.0, None))
    early.adopt(pool, started, sha)
    assert pool.sessions() == sessions and calls["close"] == []
    assert pool._transports == {h: s.transport for h, s in sessions.items()}
    assert started.pool.sessions() == {}  # handed over: the early pool keeps nothing to close twice


def _wait_for(calls: dict[str, list[str]], count: int) -> None:
    deadline = time.monotonic() + 10
    while len(calls["connect"]) < count and time.monotonic() < deadline:  # the starts run in threads
        time.sleep(0.01)


def test_apply_starts_the_hosts_of_its_playbooks_component(tmp_path: Path, calls: dict[str, list[str]]) -> None:
    _remembered(tmp_path)
    playbook = tmp_path / "pb.yml"
    playbook.write_text("# a comment first\ncomponent: riskgw\nversion: 9.9.9\n")
    started = early.start(
        ["apply", str(playbook), "-i", str(INVENTORY), "--yes", "--python", "/opt/py/bin/python3"], tmp_path
    )
    assert started_hosts(started) == _hosts_of("riskgw") != _hosts_of("ordergw")
    _wait_for(calls, len(started_hosts(started)))
    assert set(calls["python"]) == {"/opt/py/bin/python3"}


def test_apply_of_a_saved_plan_starts_nothing(tmp_path: Path, calls: dict[str, list[str]]) -> None:
    # A saved plan is planned again and compared before anything connects (tests/unit/test_saved_plan.py).
    _remembered(tmp_path)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"schema_version": 1, "component": "ordergw", "hosts": []}))
    assert early.start(["apply", str(plan), "-i", str(INVENTORY)], tmp_path) is None
    assert calls["connect"] == []


@pytest.mark.parametrize("text", ["component: [not, a, name]\n", "- a list\n", "component: x: y: {\n", ""])
def test_apply_of_an_odd_playbook_starts_nothing(tmp_path: Path, calls: dict[str, list[str]], text: str) -> None:
    _remembered(tmp_path)
    playbook = tmp_path / "pb.yml"
    playbook.write_text(text)
    assert early.start(["apply", str(playbook), "-i", str(INVENTORY)], tmp_path) is None


def test_a_limit_narrows_what_starts(tmp_path: Path, calls: dict[str, list[str]]) -> None:
    _remembered(tmp_path)
    one = sorted(_hosts_of("ordergw"))[0]
    started = early.start(["rollback", "ordergw", "-i", str(INVENTORY), "--reason", "x", "--limit", one], tmp_path)
    assert started_hosts(started) == {one}
    started = early.start(
        [
            "apply",
            str(REPO / "playbooks" / "ordergw-5.2.0.yml"),
            "-i",
            str(INVENTORY),
            "--limit",
            "dc:ny5,tr2-oe0[12]",
            "--limit",
            "role:risk",
        ],
        tmp_path,
    )  # the union: ordergw's of them
    assert started_hosts(started) == {h for h in _hosts_of("ordergw") if h.startswith(("ny5-", "tr2-"))}


@pytest.mark.parametrize(
    "limit",
    [
        ["--limit", "failed:20260101T000000Z-ordergw-abcd"],
        ["--limit", "dc:nowhere"],
        ["--hosts", "ny5-oe01"],
        ["--dc", "ny5"],
        ["--limit", "bad:x"],
    ],
)
def test_a_limit_early_cannot_resolve_starts_nothing(
    tmp_path: Path, calls: dict[str, list[str]], limit: list[str]
) -> None:
    """failed:RUN needs the journal, a typo is the command's to report, old spellings are the command's to warn."""
    _remembered(tmp_path)
    assert early.start(["rollback", "ordergw", "-i", str(INVENTORY), "--reason", "x", *limit], tmp_path) is None


def test_a_changed_inventory_or_timeout_adopts_nothing(tmp_path: Path, calls: dict[str, list[str]]) -> None:
    sha, reach = _remembered(tmp_path)
    argv = ["rollback", "ordergw", "-i", str(INVENTORY), "--reason", "x"]
    started = early.start([*argv, "--connect-timeout", "3"], tmp_path)
    hosts = started_hosts(started)
    pool = Pool(reach, timeouts=Timeouts.for_options(5.0, None))
    early.adopt(pool, started, sha)  # the command ended up with other timeouts
    assert sorted(calls["close"]) == sorted(hosts) and pool._transports == {}

    calls["close"].clear()
    started = early.start(argv, tmp_path)
    moved = {h: dataclasses.replace(e, address="198.51.100.7") for h, e in reach.items()}
    pool = Pool(moved, timeouts=Timeouts.for_options(5.0, None))
    early.adopt(pool, started, sha)  # an endpoint differs: closed unused
    assert pool._transports == {} and sorted(calls["close"]) == sorted(hosts)

    calls["close"].clear()
    started = early.start(argv, tmp_path)
    pool = Pool(reach, timeouts=Timeouts.for_options(5.0, None))
    early.adopt(pool, started, "0" * 64)  # another inventory's bytes: nothing adopted, all closed
    assert pool._transports == {} and sorted(calls["close"]) == sorted(hosts)


@pytest.mark.parametrize(
    "argv",
    [
        ["rollback"],
        ["rollback", "--help"],
        ["status", "-i", "x.yml"],
        ["rollback", "c", "-i", "inventories/prod-na.yml", "--connect-timeout", "soon"],
    ],
)
def test_odd_command_lines_start_nothing_and_print_nothing(
    tmp_path: Path, calls: dict[str, list[str]], capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    _remembered(tmp_path)
    assert early.start(argv, tmp_path) is None
    assert capsys.readouterr() == ("", "")


# ---- issue 13 §8: help and usage errors never connect ----


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {(a.option_strings[-1] if a.option_strings else "<positional>"): a for a in parser._actions}


def _sub(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    return parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr,index]


ANY_TEXT = (None, str, Path)  # converters that accept every string


@pytest.mark.parametrize("command", early.COMMANDS)
def test_the_early_parser_accepts_no_more_than_the_real_one(command: str) -> None:
    """Each option early knows behaves as the real one; every option the real parser requires, early requires."""
    real = _actions(_sub(build_parser([command]), command))
    mine = _actions(_sub(early._parser(), command))
    for name, action in mine.items():
        assert name in real, f"early knows {name}, which `{command}` does not take"
        other = real[name]
        assert (type(action), action.nargs, action.choices) == (type(other), other.nargs, other.choices), name
        if other.type not in ANY_TEXT or action.type not in ANY_TEXT:
            assert action.type.__name__.lstrip("_") == other.type.__name__, name  # type: ignore[union-attr]  # same check
    for name, action in real.items():
        if action.required:
            assert name in mine and mine[name].required, f"`{command}` requires {name}; early must too"
    for text in ("0", "-3", "x", "4"):  # the copied converters agree with the real ones
        assert _accepts(early._parallel, text) == _accepts(real["--parallel"].type, text)
    if command == "apply":
        for text in ("2026-11-28T02:00:00-05:00", "2026-11-28T02:00:00", "soon"):
            assert _accepts(early._aware, text) == _accepts(real["--now"].type, text)


def _accepts(convert: object, text: str) -> bool:
    try:
        convert(text)  # type: ignore[operator]
    except (ValueError, argparse.ArgumentTypeError):
        return False
    return True


def loopback_inventory(tmp_path: Path, port: int) -> Path:
    """prod-na.yml cut to its first ordergw host, at 127.0.0.1:``port``, with no jump host and an empty
    known_hosts (one host: two names for one address are refused)."""
    import yaml

    data = yaml.safe_load(INVENTORY.read_text())
    known = tmp_path / "known_hosts"
    known.write_text("")
    data["known_hosts"] = str(known)
    data.get("defaults", {}).pop("ssh_key", None)
    first = sorted(_hosts_of("ordergw"))[0]
    for name, dc in list(data["datacenters"].items()):
        dc.pop("jump", None)
        dc["hosts"] = {h: host for h, host in dc["hosts"].items() if h == first}
        for host in dc["hosts"].values():
            host.update(address="127.0.0.1", port=port)
            host.pop("ssh_key", None)
        if not dc["hosts"]:
            del data["datacenters"][name]
    data.pop("groups", None)
    path = tmp_path / "loopback.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def began(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[early.Started | None]]:
    """What each early start returned (through main too), closed at the end."""
    out: list[early.Started | None] = []
    real = early.start
    monkeypatch.setattr(early, "start", lambda argv, state: out.append(real(argv, state)) or out[-1])
    yield out
    for started in out:
        if started is not None:
            started.pool.close()


@pytest.fixture
def listener(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, began: list[early.Started | None]
) -> Iterator[tuple[socket.socket, Path, Path]]:
    """A loopback TCP listener every host of an inventory points at, that inventory, and the state dir
    holding its connections record."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.5)  # early connections start at once: half a second is ample to see one
    inventory = loopback_inventory(tmp_path, server.getsockname()[1])
    inv = load_inventory(inventory)
    state = tmp_path / "state"
    early.remember(state, inv.sha256, inv.model, endpoints(inv.model, inv.path))
    monkeypatch.setenv("UPGRADER_STATE_DIR", str(state))
    yield server, state, inventory
    server.close()


def _connections(server: socket.socket) -> int:
    count = 0
    try:
        while True:
            conn, _ = server.accept()
            conn.close()
            count += 1
            server.settimeout(0.2)
    except TimeoutError:
        return count


def test_a_valid_command_line_does_connect_early(
    listener: tuple[socket.socket, Path, Path], began: list[early.Started | None]
) -> None:
    """The control: with this record, early.start reaches the listener (so the tests below can fail)."""
    server, state, inventory = listener
    early.start(["rollback", "ordergw", "-i", str(inventory), "--reason", "drill", "--connect-timeout", "1"], state)
    assert _connections(server) >= 1  # one per host at least (a refused banner retries)
    assert began[0] is not None and began[0].pool.sessions()


def test_main_hands_what_started_early_to_the_command(
    listener: tuple[socket.socket, Path, Path],
    began: list[early.Started | None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No module keeps the early connections: main puts them on the command's arguments, where pool_for takes them."""
    from upgrader.commands import live, rollback

    inventory = listener[2]
    seen: list[Any] = []

    def run(args: argparse.Namespace) -> int:
        seen.append(args.early)
        seen.append(set(args.early.pool.sessions()))
        pool = live.pool_for(load_inventory(args.inventory), args)
        seen.append(pool.sessions())
        pool.close()
        return 0

    monkeypatch.setattr(rollback, "run", run)
    assert main(["rollback", "ordergw", "-i", str(inventory), "--reason", "drill", "--connect-timeout", "1"]) == 0
    started = began[0]
    assert started is not None and seen[0] is started
    assert seen[1] == set(seen[2]) == {sorted(_hosts_of("ordergw"))[0]}  # the command's pool has the early session
    assert started.pool.sessions() == {}  # handed over whole: the early pool holds nothing any more


@pytest.mark.reliability(
    "`--help` or a usage error on rollback/apply with a connections record on disk",
    "argparse's own output and exit (0 or 2); no TCP connection reaches any host",
)
@pytest.mark.parametrize(
    "argv",
    [
        ["rollback", "ordergw", "-i", str(INVENTORY), "--reason", "drill", "--help"],
        ["rollback", "--help"],
        ["rollback", "ordergw", "-i", str(INVENTORY)],  # --reason missing
        ["rollback", "ordergw", "-i", str(INVENTORY), "--reason", "x", "--connect-timeout", "soon"],
        ["rollback", "ordergw", "-i", str(INVENTORY), "--reason", "x", "--no-such-option"],
        ["rollback", "ordergw", "-i", str(INVENTORY), "--reason", "x", "--log-format", "fancy"],
        ["apply", "playbooks/ordergw-5.2.0.yml", "-i", str(INVENTORY), "-h"],
        ["apply", "playbooks/ordergw-5.2.0.yml", "-i", str(INVENTORY), "--yes", "--now", "tomorrow"],
        ["apply", "playbooks/ordergw-5.2.0.yml", "-i", str(INVENTORY), "--parallel", "0"],
        ["apply", "playbooks/ordergw-5.2.0.yml"],  # -i missing
        ["--version", "rollback", "ordergw", "-i", str(INVENTORY), "--reason", "x"],
    ],
    ids=lambda argv: " ".join(a for a in argv if a != str(INVENTORY)),
)
def test_help_and_usage_errors_open_no_connection(
    listener: tuple[socket.socket, Path, Path],
    began: list[early.Started | None],
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, object], None],
) -> None:
    server, _, inventory = listener
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as done:
        main([str(inventory) if a == str(INVENTORY) else a for a in argv])
    seen = _connections(server)
    err = capsys.readouterr().err.strip().splitlines()
    record_property("observed", f"exit {done.value.code}, {seen} connection(s); {err[-1] if err else 'help printed'}")
    assert done.value.code in (0, 2)
    assert seen == 0 and all(started is None for started in began)


def test_the_early_start_connects_before_the_models_are_imported(listener: tuple[socket.socket, Path, Path]) -> None:
    """The handshakes start before the slow imports: a fresh interpreter that only runs early.start
    has connected without importing pydantic or the models (~25 ms before every host's handshake)."""
    import subprocess
    import sys

    server, state, inventory = listener
    child = (
        "import sys, time\nfrom pathlib import Path\nfrom upgrader.commands import early\n"
        f"early.start(['rollback', 'ordergw', '-i', {str(inventory)!r}, '--reason', 'drill', "
        f"'--connect-timeout', '1'], Path({str(state)!r}))\n"
        "time.sleep(0.5)\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic' "
        "or m.startswith('upgrader.models'))))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, cwd=REPO)
    server.settimeout(20)  # a fresh interpreter on a loaded machine: its first connection may take a while
    seen = _connections(server)
    out, _ = proc.communicate(timeout=30)
    assert seen >= 1  # it did connect (so an empty module list means something)
    assert out.split() == []
