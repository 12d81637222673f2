"""A component named on the command line must be one the inventory runs; a near miss gets a did-you-mean.

The same suggestion the input files give for a misspelt key (difflib's close matches, see
upgrader/loading/inputs.py ``_suggest``), for `rollback ordrgw` and `status feedhandlr`.
"""

from __future__ import annotations

import difflib

from upgrader.errors import RefusedError
from upgrader.models.inventory import Inventory


class UnknownComponent(RefusedError):
    """A component no role of the inventory runs."""

    reference = "unknown-component"


def known(inventory: Inventory) -> list[str]:
    """Every component some role of the inventory runs, sorted."""
    return sorted({c for components in inventory.roles.values() for c in components})


def suggestion(word: str, choices: list[str]) -> str:
    """ "did you mean 'x'?" for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean '{close[0]}'?" if close else ""


def check(component: str, inventory: Inventory, where: object) -> None:
    """Refuse a component the inventory does not run, naming the closest one and the rest."""
    names = known(inventory)
    if component in names:
        return
    listed = ", ".join(names) or "none"
    hint = suggestion(component, names)
    raise UnknownComponent(
        f"no role of {where} runs a component '{component}' (components: {listed})",
        hint or "name one of the components above",
    )
