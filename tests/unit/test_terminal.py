"""The operator's terminal: log files, -vv, -q, one error format, did-you-mean for component names.

Status and rollback run the real engine and agent on fake hosts (tests/fakes); the -vv test runs
the real Fabric transport toward a loopback port nothing listens on.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import upgrader
from tests.fakes.scenario import FROM, TO, Scenario
from upgrader.cli.main import main
from upgrader.commands import components, live
from upgrader.errors import REFERENCE, UpgraderError
from upgrader.loading.inputs import load_inventory

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "inventories" / "prod-na.yml"  # TEST-NET addresses: nothing may connect to them
ERROR_LINE = re.compile(r"error\[([a-z]+(?:-[a-z]+)*)\]: \S")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    saved = logging.getLogger().handlers[:]
    yield
    for handler in logging.getLogger().handlers:
        if handler not in saved:
            handler.close()
    logging.getLogger().handlers[:] = saved


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scenario]:
    """Two fake hosts upgraded to TO (so a rollback has somewhere to go); commands reach them through the seam."""
    s = Scenario.build(tmp_path, {"ny": ["ny-1", "ny-2"]})
    outcome, _ = s.apply()
    assert outcome.exit_code == 0
    monkeypatch.setattr(live, "pool_for", lambda *a, **k: s.hosts.pool())
    monkeypatch.setenv("UPGRADER_STATE_DIR", str(tmp_path / "state"))
    yield s
    s.close()


def _documented_kinds() -> set[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("### Error kinds", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z-]+)` \|", section, flags=re.M))


def _json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]  # raises on any line that is not JSON


COMMANDS = {
    "validate": lambda s: ["validate", str(s.playbook), "-i", str(s.inventory)],
    "status": lambda s: ["status", "app", "-i", str(s.inventory), "--playbooks", str(s.tmp)],
    "rollback": lambda s: [
        "rollback",
        "app",
        "-i",
        str(s.inventory),
        "--reason",
        "INC-1 test",
        "--yes",
        "--playbook",
        str(s.playbook),
        "--log-format",
        "plain",
    ],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_commands_log_file_holds_json_lines_with_its_result(
    fleet: Scenario, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = fleet.tmp / f"{command}.log"
    code = main([*COMMANDS[command](fleet), "--log-file", str(log_file)])
    out = capsys.readouterr().out
    records = _json_lines(log_file)
    assert records, f"{command}: the log file is empty"
    last = records[-1]
    assert (last["command"], last["exit_code"]) == (command, code)
    results = [r["message"] for r in records if r["logger"] == "upgrader.result"]
    if command == "validate":
        assert code == 0 and any(m.startswith("ok: ") for m in results), results
    if command == "rollback":
        assert code == 0 and set(fleet.versions().values()) == {FROM}
        assert any("(run " in m and m in out for m in results), results  # the very line the terminal showed
    if command == "status":
        assert code == 0 and TO in out


def test_minus_vv_is_debug_without_tracebacks_or_library_configuration(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the command: connections are refused
    inventory = tmp_path / "inv.yml"
    inventory.write_text(f"""\
name: t
known_hosts: {tmp_path / "known_hosts"}
roles: {{oe: [ordergw]}}
datacenters:
  ny5:
    timezone: America/New_York
    hosts:
      ny5-1: {{address: 127.0.0.1, port: {port}, roles: [oe], user: nobody}}
""")
    (tmp_path / "known_hosts").write_text("")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "upgrader",
            "--state-dir",
            str(tmp_path / "state"),
            "status",
            "ordergw",
            "-i",
            str(inventory),
            "-vv",
            "--connect-timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    err = proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert not [line for line in err if "config file" in line or "Defaults:" in line], err[:5]
    debug = [line for line in err if line.startswith("upgrader: debug: ")]
    assert any("status: state directory" in line for line in debug), err
    assert len(err) < 40, err
    assert "ny5-1" in proc.stdout and proc.returncode == 1  # the unreachable host is in the table


def test_minus_q_prints_nothing_but_keeps_the_log_file(fleet: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    log_file = fleet.tmp / "q.log"
    assert main(["validate", str(fleet.playbook), "-i", str(fleet.inventory), "-q", "--log-file", str(log_file)]) == 0
    assert capsys.readouterr() == ("", "")
    assert any(r["message"].startswith("ok: ") for r in _json_lines(log_file))
    code = main(
        [
            "rollback",
            "app",
            "-i",
            str(fleet.inventory),
            "--reason",
            "INC-2",
            "--yes",
            "-q",
            "--playbook",
            str(fleet.playbook),
            "--log-format",
            "plain",
        ]
    )
    assert (code, capsys.readouterr()) == (0, ("", ""))
    assert set(fleet.versions().values()) == {FROM}


ERRORS = {
    "validate: a missing playbook": (["validate", "nope.yml", "-i", str(INVENTORY)], "bad-input", 1),
    "status: a misspelt component": (["status", "ordrgw", "-i", str(INVENTORY)], "unknown-component", 1),
    "rollback: a misspelt component": (
        ["rollback", "feedhandlr", "-i", str(INVENTORY), "--reason", "x", "--yes"],
        "unknown-component",
        1,
    ),
    "apply: an unknown option": (["apply", "x.yml", "-i", str(INVENTORY), "--bogus"], "usage", 2),
    "apply: --now without --reason": (
        ["apply", "x.yml", "-i", str(INVENTORY), "--now", "2026-11-28T02:00Z"],
        "refused",
        1,
    ),
    "plan: a limit matching nothing": (
        ["plan", str(REPO / "playbooks" / "ordergw-5.2.0.yml"), "-i", str(INVENTORY), "--offline", "--limit", "nohost"],
        "limit-matches-nothing",
        1,
    ),
    "show: no such run": (["show", "no-such-run"], "refused", 1),
}


@pytest.mark.reliability(
    "a bad command line or input on any command",
    "one stderr line `error[KIND]: …` with a documented KIND, and the documented exit code",
)
@pytest.mark.parametrize("case", sorted(ERRORS))
def test_one_error_format_everywhere(
    case: str, in_tmp: Path, capsys: pytest.CaptureFixture[str], record_property: Any
) -> None:
    argv, kind, exit_code = ERRORS[case]
    with pytest.raises(SystemExit) if exit_code == 2 else _no_raise() as raised:
        code = main(["--state-dir", str(in_tmp / "state"), *argv])
    code = raised.value.code if exit_code == 2 else code  # type: ignore[union-attr,assignment]
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error" in line.split(":", 1)[0]]
    assert [m.group(1) for line in errors if (m := ERROR_LINE.match(line))] == [kind], err
    assert len(errors) == 1 and code == exit_code and kind in _documented_kinds(), err
    record_property("observed", f"exit {code}: {errors[0][:110]}")


class _no_raise:
    value = None

    def __enter__(self) -> _no_raise:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def test_every_error_kind_is_kebab_case_and_documented() -> None:
    root = Path(upgrader.__file__).parent
    for path in sorted(root.rglob("*.py")):  # upgrader/temporal has no __init__: walk files, not packages
        name = ".".join(("upgrader", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        if not name.startswith(("upgrader.agent", "upgrader.__main__")):
            importlib.import_module(name)
    kinds: set[str] = set()
    pending: list[type[UpgraderError]] = [UpgraderError]
    while pending:
        cls = pending.pop()
        kinds.add(cls.reference)
        pending += cls.__subclasses__()
    assert all(REFERENCE.fullmatch(k) for k in kinds), kinds
    from upgrader.cli.main import BUG, INTERRUPTED, USAGE

    assert kinds | {USAGE, BUG, INTERRUPTED} == _documented_kinds()
    with pytest.raises(TypeError, match="kebab-case"):
        type("Bad", (UpgraderError,), {"reference": "Bad_Kind"})


NAMES = components.known(load_inventory(INVENTORY).model)


@given(st.sampled_from(NAMES), st.data())
def test_a_component_one_keystroke_off_gets_a_did_you_mean(name: str, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(name) - 1))
    typo = data.draw(
        st.sampled_from(
            [
                name[:i] + name[i + 1 :],  # a letter dropped
                name[:i] + name[i + 1 : i + 2] + name[i : i + 1] + name[i + 2 :],
            ]
        )
    )  # two swapped
    if typo == name:
        return
    with pytest.raises(components.UnknownComponent) as raised:
        components.check(typo, load_inventory(INVENTORY).model, "inv.yml")
    assert raised.value.hint == f"did you mean '{name}'?"
    assert "\n" not in str(raised.value) and ", ".join(NAMES) in str(raised.value)


@given(st.text(max_size=30))
def test_any_other_name_is_refused_in_one_line_naming_the_components(text: str) -> None:
    if text in NAMES:
        return
    with pytest.raises(components.UnknownComponent) as raised:
        components.check(text, load_inventory(INVENTORY).model, "inv.yml")
    assert ", ".join(NAMES) in str(raised.value) and raised.value.reference == "unknown-component"
