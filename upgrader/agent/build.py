"""Builds the one program a host runs from the agent's modules: joined in dependency order, at build time.

The agent is a package here (one module per concern, type-checked) and one program on a host: bootstrap.py
compiles a single source, caches the code under that source's digest and runs it.  Joining (rather than a
zip loaded through zipimport) keeps that first stage as small as it was: no importer to install, no zipfile
import on the host, one code object to cache and check, and tests load the very text a host runs.  It is
mitogen's shape (docs/howitworks.rst): a small first stage, then one compressed source sent whole; mitogen
forwards its other modules on demand, which the agent has no use for, since every program needs them all.

What the join drops, line by line, is only what exists for the type checker and the package:
``from __future__ import annotations`` (said once, first), relative imports (every module shares one
namespace on the host), and the ``TYPE_CHECKING`` blocks.  The rules it relies on (a module imports only
modules before it in MODULES, no top-level name is defined twice) are checked here and by
tests/unit/test_agent_build.py; the result is the same bytes on every build.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent

# The agent's modules in the order they are joined: each imports only modules before it.
MODULES = (
    "protocol",
    "shapes",
    "errors",
    "fs",
    "state",
    "processes",
    "releases",
    "records",
    "service",
    "http_get",
    "service_scope",
    "program_lock",
    "checks",
    "unpack",
    "config",
    "ops_look",
    "ops_install",
    "ops_rollback",
    "operations",
    "serving",
)

FUTURE = "from __future__ import annotations"
HEADER = (
    "# upgrader host agent, built from upgrader/agent/ (build.py): standard library only, run by bootstrap.py.\n"
    f"{FUTURE}\n"
)


class BuildError(Exception):
    """A module breaks a rule the join relies on (a programming error in upgrader/agent/, never input)."""


def module_text(name: str) -> str:
    return HERE.joinpath(f"{name}.py").read_text()


def strip_module(name: str, text: str, earlier: frozenset[str]) -> str:
    """``text`` without its future import, relative imports and TYPE_CHECKING blocks."""
    out: list[str] = []
    lines = iter(text.splitlines())
    for line in lines:
        if line == FUTURE or line == "TYPE_CHECKING = False":
            continue
        if line.startswith("from ."):
            source = line[len("from .") :].split(" ", 1)[0]
            if source not in earlier:
                raise BuildError(f"upgrader/agent/{name}.py imports {source}, which is not joined before it")
            if line.endswith("("):  # wrapped by ruff format: skip to its closing parenthesis
                for line in lines:
                    if line == ")":
                        break
            continue
        if line == "if TYPE_CHECKING:":
            for line in lines:  # skip the block: its indented body and the blank lines after it
                if line and not line.startswith(" "):
                    out.append(line)
                    break
            continue
        if "TYPE_CHECKING" in line or line.startswith(("import upgrader", "from upgrader")):
            raise BuildError(f"upgrader/agent/{name}.py: {line.strip()!r} cannot be joined")
        out.append(line)
    return "\n".join(out).strip("\n")


def program() -> str:
    """The agent as one program: the same text on every build of the same modules."""
    parts = [HEADER]
    earlier: set[str] = set()
    for name in MODULES:
        body = strip_module(name, module_text(name), frozenset(earlier))
        parts.append(f"\n\n# ---------------------------------------------------------------- {name}.py\n{body}\n")
        earlier.add(name)
    return "".join(parts)


def program_file(directory: Path) -> Path:
    """The program in ``directory``, named by its digest, written once: for tests and benchmarks that start
    it as a process ("upgrader" in its name: an agent recognises another by that, program_lock)."""
    import hashlib
    import os

    text = program()
    path = directory / f"upgrader-agent-{hashlib.sha256(text.encode()).hexdigest()[:24]}.py"
    if not path.exists():
        tmp = path.with_name(f"{path.name}.{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(path)  # whole or not at all, for processes building side by side
    return path
