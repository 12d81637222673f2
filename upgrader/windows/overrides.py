"""Load the operator override file (closures the library does not know yet, extra freeze days)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from upgrader.errors import InputError, Problem
from upgrader.loading import yamlfile
from upgrader.loading.inputs import Loaded
from upgrader.loading.validate import validate
from upgrader.models.inventory import Inventory
from upgrader.models.overrides import Overrides
from upgrader.models.playbook import Windows
from upgrader.windows import localtime, markets


def load_overrides(path: Path) -> Loaded[Overrides]:
    """Read and validate an override file; every problem is located as file:line:col."""
    doc = yamlfile.load(path, "overrides")
    if not isinstance(doc.data, dict):
        raise InputError(
            [
                Problem(
                    doc.locate(()),
                    "expected a mapping at the top level",
                    "see inventories/overrides.yml for the format",
                )
            ]
        )
    loaded = Loaded(validate(doc, Overrides), path, hashlib.sha256(doc.text.encode()).hexdigest(), doc)
    problems = override_problems(loaded)
    if problems:
        raise InputError(problems)
    return loaded


def override_problems(ov: Loaded[Overrides]) -> list[Problem]:
    problems: list[Problem] = []
    for i, closure in enumerate(ov.model.closures):
        problems += _market_problems(ov, closure.market, ("closures", i, "market"))
    for i, extra in enumerate(ov.model.freeze):
        if localtime.zone(extra.timezone) is None:
            problems.append(
                Problem(ov.at("freeze", i, "timezone"), f"unknown timezone {extra.timezone!r}", localtime.ZONE_HINT)
            )
    return problems


def market_problems(windows: Windows, where: Loaded[Any] | None, inventory: Loaded[Inventory]) -> list[Problem]:
    """Located problems for every market MIC the calendar library cannot answer for.

    ``where`` is the playbook the ``windows`` came from (for locations), or None.
    """
    problems: list[Problem] = []
    for dc_name, dc in inventory.model.datacenters.items():
        for i, mic in enumerate(dc.markets):
            problems += _market_problems(inventory, mic, ("datacenters", dc_name, "markets", i))
    if where is not None:
        for i, mic in enumerate(windows.markets):
            problems += _market_problems(where, mic, ("windows", "markets", i))
    return problems


def _market_problems(src: Loaded[Any], mic: str, loc: tuple[str | int, ...]) -> list[Problem]:
    try:
        markets.calendar_name(mic)
    except markets.UnknownMarketError as exc:
        return [Problem(src.at(*loc), exc.message, exc.hint)]
    return []
