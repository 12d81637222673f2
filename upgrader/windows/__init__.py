"""Trading windows: market hours, maintenance windows, freeze days and operator overrides.

Pure: every function that depends on time takes ``now`` (an aware datetime).
The engine calls :func:`evaluate` before starting a run and :func:`break_glass`
when an emergency rollback bypasses the guard.

Names are resolved lazily: ``from upgrader.windows import break_glass`` must
not import pandas and the market calendars (an emergency rollback should not
wait for them); only the guard itself needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "BreakGlass": "breakglass",
    "break_glass": "breakglass",
    "Blocker": "verdict",
    "Verdict": "verdict",
    "Window": "verdict",
    "DEFAULT_HORIZON": "guard",
    "evaluate": "guard",
    "evaluate_windows": "guard",
    "markets_for": "guard",
    "FALLBACKS": "markets",
    "UnknownMarketError": "markets",
    "load_overrides": "overrides",
    "market_problems": "overrides",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"upgrader.windows.{_WHERE[name]}"), name)
