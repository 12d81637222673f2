"""The package's layers, read from the source: what each part of upgrader may import (docs/internals.md).

Every ``import`` and ``from … import`` in upgrader/ counts, including those inside functions and
under ``if TYPE_CHECKING``: a lazy import is still a dependency, and a type-only one still ties the
layers together for a reader.  A new package or top-level module must be given its rule here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "upgrader"
BASE = {"errors", "charset", "escaping", "files", "versions", "__init__"}  # below everything; import nothing above
EVERYTHING = {
    "agent",
    "cli",
    "commands",
    "engine",
    "loading",
    "models",
    "planning",
    "reporting",
    "temporal",
    "transport",
    "windows",
    "journal",
    "vocabulary",
    "notify",
    "scheduling",
    "__main__",
}
ABOVE_RECORDS = {"engine", "reporting", "temporal", "commands", "cli", "transport", "agent", "scheduling", "notify"}
# unit -> the units it must not import, and why (the message a failure prints)
MUST_NOT: dict[str, tuple[set[str], str]] = {
    "agent": (EVERYTHING - {"agent"}, "the agent runs on the hosts' own python3 with the stdlib only"),
    "models": (EVERYTHING - {"models"}, "models are plain data: they know nothing of how they are used"),
    "transport": (
        EVERYTHING - {"transport", "agent"},
        "the transport is the seam under the engine; it knows no run (transport/local.py runs the real agent)",
    ),
    "planning": (
        EVERYTHING - {"planning", "models"},
        "the planner is pure: no I/O, no clock, no engine (byte-identical plans)",
    ),
    "vocabulary": (EVERYTHING - {"vocabulary"}, "the words of runs and journals, shared by every layer above"),
    "journal": (ABOVE_RECORDS, "the journal's format is below both its writer (engine) and its readers (reporting)"),
    "loading": ({"engine", "reporting", "temporal", "commands", "cli", "transport", "agent", "journal"}, "inputs"),
    "windows": ({"engine", "reporting", "temporal", "commands", "cli", "transport", "agent", "journal"}, "inputs"),
    "engine": (
        {"reporting", "temporal", "commands", "cli"},
        "the engine runs plans on hosts; reports read its journals, commands and drivers call it",
    ),
    "reporting": (
        {"engine", "temporal", "commands", "cli", "transport", "agent"},
        "reporting reads journals (upgrader.journal) and renders them; it never runs anything",
    ),
    "temporal": ({"commands", "cli", "reporting"}, "the Temporal driver carries out the engine's work"),
    "commands": ({"agent"}, "commands parse, call the engine and print"),
    "cli": (set(), ""),
    "notify": ({"engine", "reporting", "temporal", "commands", "cli", "transport", "agent"}, "a sender only"),
    "scheduling": ({"engine", "reporting", "temporal", "commands", "cli", "transport", "agent"}, "a unit file"),
    "__main__": (set(), ""),
}


def unit_of(module: str) -> str:
    """``upgrader.engine.pool`` → "engine"; ``upgrader.journal`` → "journal"; ``upgrader`` → "__init__"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every upgrader module ``path`` imports, lazily or not."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.startswith("upgrader."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "upgrader":
                yield from ((node.lineno, f"upgrader.{a.name}") for a in node.names)
            elif node.module.startswith("upgrader."):
                yield node.lineno, node.module


def module_of(path: Path, package: Path = PACKAGE) -> str:
    return ".".join(path.relative_to(package.parent).with_suffix("").parts)


def violations(package: Path = PACKAGE) -> list[str]:
    out = []
    for path in sorted(package.rglob("*.py")):
        source = unit_of(module_of(path, package))
        forbidden, why = MUST_NOT.get(source, (set(), ""))
        for line, module in imports(path):
            target = unit_of(module)
            dotted = ".".join(module.split(".")[1:3])
            if target != source and (target in forbidden or dotted in forbidden):
                out.append(f"{path.relative_to(package.parent)}:{line}: {source} imports {module} ({why})")
    return out


def test_every_part_of_the_package_has_a_rule() -> None:
    units = {unit_of(module_of(p)) for p in PACKAGE.rglob("*.py")}
    assert units - BASE - set(MUST_NOT) == set(), "give each new package or top-level module its rule in MUST_NOT"


def test_the_layers_hold() -> None:
    assert violations() == []


def test_engine_and_reporting_do_not_import_each_other() -> None:
    """Said on its own: the rule the layout was changed for (issue 26 §5)."""
    crossing = [v for v in violations() if v.split(": ")[1].split(" imports ")[0] in ("engine", "reporting")]
    assert crossing == []


@pytest.mark.parametrize(
    ("unit", "line", "caught"),
    [
        ("engine/progress.py", "from upgrader.reporting.model import RunRecord", True),
        ("reporting/fmt.py", "from upgrader.engine.pool import Pool", True),
        ("reporting/fmt.py", "    from upgrader import engine", True),
        ("planning/steps.py", "from upgrader.transport.base import Endpoint", True),
        ("engine/progress.py", "from upgrader.journal import Journal", False),
        ("reporting/fmt.py", "from upgrader.vocabulary import HostState", False),
    ],
)
def test_a_crossing_import_is_caught(tmp_path: Path, unit: str, line: str, caught: bool) -> None:
    """The check itself can fail: one import added to a copy of a module is reported, or not, by its rule."""
    copy = tmp_path / "upgrader"
    target = copy / unit
    target.parent.mkdir(parents=True)
    target.write_text(("def f() -> None:\n" + line + "\n") if line.startswith(" ") else (line + "\n"))
    found = violations(copy)
    assert bool(found) == caught, found
    if caught:
        assert found[0].startswith(f"upgrader/{unit}:")


# Commands that hand their run to the engine: they may not journal, audit, notify or talk to an agent themselves.
ENGINE_WORK = {
    "upgrader.journal": {"Journal", "audit"},
    "upgrader.engine.notifier": {"*"},
    "upgrader.engine.remote": {"*"},
}


@pytest.mark.parametrize("command", ["rollback", "unlock"])
def test_these_commands_do_no_engine_work(command: str) -> None:
    """The command parses, calls the engine (engine/emergency.py, engine/unlock.py) and prints."""
    path = PACKAGE / "commands" / f"{command}.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module in ENGINE_WORK:
            names = {a.name for a in node.names}
            wanted = ENGINE_WORK[node.module]
            if "*" in wanted or names & wanted:
                found.append(f"{path.name}:{node.lineno}: from {node.module} import {', '.join(sorted(names))}")
        elif isinstance(node, ast.ImportFrom) and node.module == "upgrader.engine":
            found += [
                f"{path.name}:{node.lineno}: engine.{a.name}" for a in node.names if a.name in ("remote", "notifier")
            ]
    assert found == []


MAX_LINES = 600
OWNED_ELSEWHERE = ("agent/", "engine/apply.py", "temporal/")  # split by their own work (issue 26 §1, §4)


def test_no_module_is_over_600_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
        and not str(p.relative_to(PACKAGE)).startswith(OWNED_ELSEWHERE)
    }
    assert long == {}
