"""One module per subcommand; each has HELP, add_arguments(parser) and run(args) -> exit code.

Modules are imported only when their command runs: an emergency rollback must
not wait for market calendars (pandas) to import.
"""

from __future__ import annotations

import importlib
from types import ModuleType

NAMES = (
    "validate",
    "plan",
    "diff",
    "facts",
    "apply",
    "resume",
    "rollback",
    "unlock",
    "status",
    "audit",
    "promote",
    "abort",
    "runs",
    "show",
    "report",
    "windows",
    "schedule",
    "notify",
    "schema",
    "completion",
    "worker",
    "watch",
)


def load(name: str) -> ModuleType:
    return importlib.import_module(f"upgrader.commands.{name}")


def available() -> list[str]:
    """Commands whose module exists (some arrive with later issues)."""
    import importlib.util

    return [n for n in NAMES if importlib.util.find_spec(f"upgrader.commands.{n}") is not None]
