"""Placeholders always have a value: substituted once, never silently empty, refused where they can have none.

`{release}`/`{version}` name the release a program runs for: the new one in a hop, the current one in
prechecks and facts, the one rolled back to in a rollback.  Where only the host knows it (facts, an
emergency rollback to the recorded previous release) the agent fills it in; those tests run the
agent's own code on a temporary release tree.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.unit import agent_code
from upgrader.engine import programs
from upgrader.errors import InputError
from upgrader.loading.inputs import load_playbook
from upgrader.models.playbook import Playbook
from upgrader.planning import operations

PLAYBOOK = """\
component: app
vendor: Example
version: "2.0.0"
artifact: {file: app-2.0.0.tar.gz, sha256: "SHA"}
upgrade_from: ">=1.0,<2.0"
install: {root: /opt/app}
migrate: {command: ["{release}/bin/migrate", "{previous}", "{from_version}", "{version}"]}
service:
  start: ["{release}/bin/ctl", start]
  stop: ["{release}/bin/ctl", stop]
  status: ["{release}/bin/ctl", status, "{version}"]
prechecks:
  commands:
    - name: ready
      command: {argv: ["{release}/bin/ready", "{component}"]}
checks:
  - name: alive
    command: {argv: ["{release}/bin/alive", "{root}"]}
  - name: reports
    version: {argv: ["{release}/bin/version"]}
""".replace("SHA", "a" * 64)


def spec(text: str = PLAYBOOK) -> Playbook:
    return Playbook.model_validate(yaml.safe_load(text))


# ------------------------------------------------------------ substitute


def test_substitute_replaces_each_placeholder_once() -> None:
    values = {"release": "/opt/app/releases/{version}", "version": "2.0"}
    assert operations.substitute(["{release}/bin", "v{version}", "{{version}}"], values) == [
        "/opt/app/releases/{version}/bin",
        "v2.0",
        "{2.0}",
    ]  # a value is never substituted again


def test_a_placeholder_without_a_value_raises() -> None:
    with pytest.raises(operations.PlaceholderError, match=r"\{previous\} has no value in '\{previous\}/x'"):
        operations.substitute(["{previous}/x"], operations.placeholders(spec(), "2.0.0"))


def test_deferred_placeholders_are_left_for_the_agent() -> None:
    values = operations.placeholders(spec())
    assert "release" not in values and "version" not in values  # absent, not ""
    assert operations.substitute(["{release}/x", "{root}"], values, defer=operations.AGENT_FILLS) == [
        "{release}/x",
        "/opt/app",
    ]
    with pytest.raises(operations.PlaceholderError):
        operations.substitute(["{previous}"], values, defer=operations.AGENT_FILLS)


NAMES = st.sampled_from(["release", "previous", "version", "from_version", "root", "component"])
PIECES = st.one_of(NAMES.map(lambda n: "{" + n + "}"), st.text(alphabet="ab/-{}.", max_size=4))
ARGV = st.lists(st.lists(PIECES, min_size=1, max_size=4).map("".join), min_size=1, max_size=4)


@given(argv=ARGV, version=st.sampled_from([None, "2.0.0"]), previous=st.sampled_from([None, "1.0.0"]))
def test_property_substitution_is_complete_or_refused(
    argv: list[str], version: str | None, previous: str | None
) -> None:
    values = operations.placeholders(spec(), version, previous)
    named = {n for arg in argv for n in operations._PLACEHOLDER.findall(arg)}
    try:
        out = operations.substitute(argv, values)
    except operations.PlaceholderError as exc:
        assert named - set(values), exc  # raised only for a placeholder that really has no value
        return
    assert named <= set(values)
    assert len(out) == len(argv) and all(out_arg or not arg for arg, out_arg in zip(argv, out, strict=True))
    for arg, out_arg in zip(argv, out, strict=True):  # every known name replaced by its value, nothing else
        expected = operations._PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), arg)
        assert out_arg == expected


# ------------------------------------------------------------ which release each program names


def _argv(service: dict[str, Any], key: str) -> list[str]:
    return service[key]


def test_hop_ops_name_the_release_of_each_step() -> None:
    ops = dict(operations.hop_ops(spec(), "1.0.0", "2.0.0"))
    old, new = "/opt/app/releases/1.0.0", "/opt/app/releases/2.0.0"
    assert ops["stop"]["service"]["stop"] == [f"{old}/bin/ctl", "stop"]  # the release that is running
    assert ops["start"]["service"]["start"] == [f"{new}/bin/ctl", "start"]
    assert ops["migrate"]["argv"] == [f"{new}/bin/migrate", old, "1.0.0", "2.0.0"]
    assert ops["verify"]["checks"][0]["command"]["argv"] == [f"{new}/bin/alive", "/opt/app"]
    assert ops["verify"]["checks"][1]["version"]["argv"] == [f"{new}/bin/version"]
    assert ops["verify"]["service"]["status"] == [f"{new}/bin/ctl", "status", "2.0.0"]


def test_prechecks_name_the_current_release() -> None:
    op = operations.precheck_op(spec(), "1.0.0")
    assert op["commands"][0]["command"]["argv"] == ["/opt/app/releases/1.0.0/bin/ready", "app"]
    assert op["checks"][0]["command"]["argv"] == ["/opt/app/releases/1.0.0/bin/alive", "/opt/app"]


def test_a_rollback_to_a_known_release_names_it() -> None:
    op = programs.rollback_op(spec(), "1.0.0", "h1/rollback")
    assert op["service"]["start"] == ["/opt/app/releases/1.0.0/bin/ctl", "start"]
    assert op["checks"][0]["command"]["argv"] == ["/opt/app/releases/1.0.0/bin/alive", "/opt/app"]


def test_facts_and_emergency_rollback_leave_the_release_to_the_agent() -> None:
    facts = programs.facts_op(spec())
    assert facts["service"]["status"] == ["{release}/bin/ctl", "status", "{version}"]
    assert facts["version_check"]["argv"] == ["{release}/bin/version"]
    back = programs.rollback_op(spec(), None)
    assert back["service"]["start"] == ["{release}/bin/ctl", "start"]
    assert back["checks"][0]["command"]["argv"] == ["{release}/bin/alive", "/opt/app"]


def test_every_op_is_free_of_empty_substitutions() -> None:
    """No argument of any program is empty, and none names a placeholder the agent will not fill."""
    s = spec()
    ops = [
        programs.facts_op(s),
        operations.precheck_op(s, "1.0.0"),
        programs.rollback_op(s, None),
        programs.rollback_op(s, "1.0.0"),
        operations.bake_op(s, "2.0.0"),
        *(op for _, op in operations.hop_ops(s, "1.0.0", "2.0.0")),
    ]
    for arg in _strings(ops):
        assert arg != ""
        assert set(operations._PLACEHOLDER.findall(arg)) <= set(operations.AGENT_FILLS), arg


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


# ------------------------------------------------------------ the agent fills in what only the host knows


def _script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """releases/1.0.0 (able to report healthy) and releases/2.0.0 (current, whose checks fail)."""
    monkeypatch.setattr(agent_module(), "STATE", str(tmp_path / "state"))
    root = tmp_path / "opt"
    marks = tmp_path / "marks"
    marks.mkdir()
    for version, ok in (("1.0.0", 0), ("2.0.0", 1)):
        release = root / "releases" / version
        _script(release / "bin" / "ctl", f'echo "$@" >> {marks}/{version}; [ "$1" != status ] || exit {ok}')
        _script(release / "bin" / "alive", f"exit {ok}")
        _script(release / "bin" / "version", f"echo {version}")
    os.symlink("releases/2.0.0", root / "current")
    (root / "releases" / "2.0.0" / ".upgrader").mkdir()
    (root / "releases" / "2.0.0" / ".upgrader" / "previous.json").write_text('{"version": "1.0.0"}')
    return root


_AGENT = agent_code.load("upgrader_agent_placeholders")


def agent_module() -> Any:
    """The agent's own code, as a module (it runs as a script on the hosts)."""
    return _AGENT


def test_facts_fill_in_the_current_release(tree: Path) -> None:
    a = agent_module()
    ctx = {"root": str(tree), "component": "app", "run": None}
    out = a.op_facts(ctx, programs.facts_op(spec()))
    assert out["installed"] == "2.0.0" and out["service"] == "inactive"  # 2.0.0's own ctl answered
    assert (tree.parent / "marks" / "2.0.0").read_text() == "status 2.0.0\n"


def test_facts_with_nothing_installed_ask_no_command(tree: Path) -> None:
    a = agent_module()
    (tree / "current").unlink()
    out = a.op_facts({"root": str(tree), "component": "app", "run": None}, programs.facts_op(spec()))
    assert out["installed"] is None and out["service"] is None
    assert not (tree.parent / "marks" / "2.0.0").exists()


def test_an_emergency_rollback_names_the_release_it_goes_back_to(tree: Path) -> None:
    a = agent_module()
    ctx = {"root": str(tree), "component": "app", "run": "r1"}
    out = a.op_rollback(ctx, programs.rollback_op(spec(), None, "rollback"))
    assert out["to"] == "1.0.0" and out["checks"][0]["ok"]  # 1.0.0's alive passed; 2.0.0's would fail
    assert os.readlink(tree / "current") == "releases/1.0.0"
    assert (tree.parent / "marks" / "1.0.0").read_text().split("\n")[:2] == ["stop", "start"]


def test_with_release_never_substitutes_nothing() -> None:
    a = agent_module()
    with pytest.raises(a.OpFailed, match="has no value"):
        a.with_release({"status": ["{release}/bin/ctl"]}, "/opt/app", None)
    assert a.with_release({"systemd": "app.service"}, "/opt/app", None) == {"systemd": "app.service"}


# ------------------------------------------------------------ validation names the field


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ('start: ["{release}/bin/ctl", start]', 'start: ["{previous}/bin/ctl", start]', "9:10: service.start"),
        (
            'status: ["{release}/bin/ctl", status, "{version}"]',
            'status: ["{release}/bin/ctl", status, "{from_version}"]',
            "11:11: service.status",
        ),
        (
            'argv: ["{release}/bin/ready", "{component}"]',
            'argv: ["{previous}/bin/ready"]',
            "15:23: prechecks.commands.0.command.argv",
        ),
        (
            'argv: ["{release}/bin/alive", "{root}"]',
            'argv: ["{release}/bin/alive", "{previous}"]',
            "18:21: checks.0.command.argv",
        ),
        (
            'version: {argv: ["{release}/bin/version"]}',
            'version: {argv: ["{from_version}/bin/version"]}',
            "20:21: checks.1.version.argv",
        ),
    ],
)
@pytest.mark.reliability
def test_a_placeholder_that_can_have_no_value_is_refused_where_it_is(
    tmp_path: Path, old: str, new: str, where: str, record_property: Any
) -> None:
    record_property("scenario", f"a playbook names {{previous}}/{{from_version}} where it has no value: {where[6:]}")
    record_property("expected", "validation refuses it at file:line:col; never an empty argument")
    assert PLAYBOOK.count(old) == 1
    path = tmp_path / "playbook.yml"
    path.write_text(PLAYBOOK.replace(old, new))
    with pytest.raises(InputError) as err:
        load_playbook(path)
    (problem,) = err.value.problems
    assert f"{path}:{where}" in str(problem) and "has no value where this command runs" in str(problem), problem
    record_property("observed", str(problem).replace(str(tmp_path) + "/", "")[:140])


def test_migrations_may_name_the_previous_release(tmp_path: Path) -> None:
    path = tmp_path / "playbook.yml"
    path.write_text(PLAYBOOK)
    assert load_playbook(path).model.migrate is not None


def test_shipped_playbooks_are_still_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    for pb in [*(root / "playbooks").glob("*.yml"), *(root / "lab" / "playbooks").glob("*.yml")]:
        load_playbook(pb)
