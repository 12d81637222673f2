"""One module per subcommand; each has HELP, add_arguments(parser) and run(args) -> exit code."""

from __future__ import annotations

from types import ModuleType

from upgrader.commands import plan, schema, validate

COMMANDS: dict[str, ModuleType] = {
    "validate": validate,
    "plan": plan,
    "schema": schema,
}
