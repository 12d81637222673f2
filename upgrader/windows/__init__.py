"""Trading windows: market hours, maintenance windows, freeze days and operator overrides.

Pure: every function that depends on time takes ``now`` (an aware datetime).
The engine calls :func:`evaluate` before starting a run and :func:`break_glass`
when an emergency rollback bypasses the guard.
"""

from upgrader.windows.breakglass import BreakGlass, break_glass
from upgrader.windows.guard import DEFAULT_HORIZON, evaluate, evaluate_windows, markets_for
from upgrader.windows.markets import FALLBACKS, UnknownMarketError
from upgrader.windows.overrides import load_overrides, market_problems
from upgrader.windows.verdict import Blocker, Verdict, Window

__all__ = [
    "DEFAULT_HORIZON",
    "FALLBACKS",
    "Blocker",
    "BreakGlass",
    "UnknownMarketError",
    "Verdict",
    "Window",
    "break_glass",
    "evaluate",
    "evaluate_windows",
    "load_overrides",
    "market_problems",
    "markets_for",
]
