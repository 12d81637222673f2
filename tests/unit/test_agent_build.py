"""The agent is a package of small typed modules and ships as one program (upgrader/agent/build.py): the
same bytes on every build, each module small, the join sound (one definition per name, nothing but stdlib
imports), and runnable by the oldest python3 the README promises."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from upgrader import agent
from upgrader.agent import build, protocol
from upgrader.agent.operations import OPS

AGENT_DIR = Path(agent.__file__).parent
MAX_LINES = 400
MINIMUM = (3, 8)  # the README's "Minimum Python on the hosts", which bootstrap.py enforces


def test_the_shipped_program_is_byte_identical_across_two_builds() -> None:
    """Built twice in fresh interpreters (no cache shared): same program, same packed bytes, same key."""
    code = "from upgrader import agent; print(agent.source_key(), len(agent.packed_source()))"
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=AGENT_DIR.parents[1]
        )
        for _ in range(2)
    ]
    assert runs[0].stdout == runs[1].stdout and runs[0].stdout.split()[0] == agent.source_key()
    assert build.program() == build.program()


def test_every_module_of_the_agent_is_at_most_400_lines() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in sorted(AGENT_DIR.glob("*.py"))}
    assert set(MODULE + ".py" for MODULE in build.MODULES) <= set(sizes)
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_every_module_but_the_controllers_own_is_joined() -> None:
    controller_side = {"__init__", "build", "bootstrap"}  # build and send the program; bootstrap runs it
    assert {p.stem for p in AGENT_DIR.glob("*.py")} - controller_side == set(build.MODULES)


def test_the_joined_program_defines_each_name_once_and_imports_only_the_standard_library() -> None:
    tree = ast.parse(build.program(), feature_version=MINIMUM)  # also: no syntax newer than the minimum
    defined: dict[str, int] = {}
    for node in tree.body:
        names: list[str] = []
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        for name in names:
            defined[name] = defined.get(name, 0) + 1
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and (node.module == "__future__" or node.module in sys.stdlib_module_names)
        if isinstance(node, ast.Import):
            assert all(a.name.split(".")[0] in sys.stdlib_module_names for a in node.names), ast.dump(node)
    assert {n: k for n, k in defined.items() if k > 1} == {}, "two modules define the same name"
    assert "TYPE_CHECKING" not in build.program()


def test_a_module_importing_one_joined_after_it_is_refused() -> None:
    with pytest.raises(build.BuildError, match="imports serving, which is not joined before it"):
        build.strip_module("fs", "from .serving import main\n", frozenset({"errors"}))


def test_the_operations_the_agent_runs_are_the_protocols() -> None:
    assert tuple(OPS) == protocol.OPERATIONS and set(protocol.READ_ONLY) <= set(OPS)


def _pythons() -> list[Path]:
    """The interpreters on this machine from the minimum up, other than the one running the tests."""
    found = [*sorted(Path("/root/.pyenv/versions").glob("3.*/bin/python3")), Path("/usr/bin/python3")]
    return [p for p in found if p.exists()]


def _version(python: Path) -> tuple[int, int]:
    out = subprocess.run(
        [str(python), "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True
    )
    major, minor = out.stdout.split()
    return int(major), int(minor)


@pytest.mark.parametrize("python", _pythons(), ids=str)
def test_the_agent_serves_on_every_python_from_the_minimum(python: Path, tmp_path: Path) -> None:
    """Through the real start (loader, bootstrap, packed source, programs on stdin): facts of a real layout,
    then an unknown operation refused.  The key sent is not the source's digest, so the bootstrap neither
    reads nor writes its cache under this machine's /var/lib/upgrader (it compiles what it was sent)."""
    if _version(python) < MINIMUM:
        pytest.skip(f"{python} is older than the minimum")
    root = tmp_path / "opt" / "app"
    (root / "releases" / "1.0").mkdir(parents=True)
    (root / "current").symlink_to("releases/1.0")
    facts = {"component": "unit-build", "root": str(root), "run": None, "ops": [{"op": "facts"}]}
    unknown = {**facts, "ops": [{"op": "no-such-op"}]}
    argv = agent.serving_command(str(python))
    assert argv[-1] == agent.source_key()
    res = subprocess.run(
        [*argv[:-1], "0" * 24],
        input=f"{agent.serving_input(facts)}\n{agent.pack_program(unknown)}\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    first, second = agent.parse_output(res.stdout)
    assert first["ok"] and first["installed"] == "1.0", json.dumps(first)
    assert not second["ok"] and "unknown operation 'no-such-op'" in second["error"]
    ends = [line for line in res.stdout.splitlines() if line.startswith(agent.END)]
    assert ends == [f"{agent.END}0", f"{agent.END}1"]


def test_the_bootstrap_enforces_the_minimum() -> None:
    source = Path(agent.__file__).with_name("bootstrap.py").read_text()
    assert f"MINIMUM = {MINIMUM}" in source
    readme = (AGENT_DIR.parents[1] / "README.md").read_text()
    assert f"**Minimum Python on the hosts: {MINIMUM[0]}.{MINIMUM[1]}**" in readme
    ast.parse(source, feature_version=(3, 6))  # it must parse where it refuses


OLDER = [p for p in _pythons() if _version(p) < MINIMUM]


@pytest.mark.skipif(not OLDER, reason="no python3 older than the minimum on this machine")
@pytest.mark.reliability(
    "a host whose python3 is older than 3.8",
    "the agent refuses at start: exit 1, one line naming that python, its version and the fix; nothing runs",
)
def test_an_older_python_is_refused_in_one_line_that_says_what_to_do(record_property, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    seen = []
    for python in OLDER:
        program = {"component": "unit-build", "root": str(tmp_path), "run": None, "ops": [{"op": "facts"}]}
        res = subprocess.run(
            [*agent.serving_command(str(python))[:-1], "0" * 24],  # no cache: see above
            input=agent.serving_input(program) + "\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        version = ".".join(map(str, _version(python)))
        assert res.returncode == 1 and agent.MARKER not in res.stdout, res
        (line,) = res.stderr.splitlines()
        assert line.startswith(f"upgrader agent: needs Python 3.8 or later, and {python} is {version}."), line
        assert line.endswith("; fix: install a newer python3 on this host or name one with --python"), line
        seen.append(f"{version}: exit {res.returncode}, stderr {res.stderr.strip()!r}, stdout {len(res.stdout)} bytes")
    record_property("observed", "; ".join(seen))
