"""One module per subcommand; each has HELP, add_arguments(parser) and run(args) -> exit code."""

from __future__ import annotations

from types import ModuleType

from upgrader.commands import apply, facts, plan, schedule, schema, validate, windows

COMMANDS: dict[str, ModuleType] = {
    "validate": validate,
    "plan": plan,
    "facts": facts,
    "apply": apply,
    "schema": schema,
    "windows": windows,
    "schedule": schedule,
}
