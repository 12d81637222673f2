"""The host agent's own code (upgrader/agent/agent.py) as a module, for tests that run it on real files.

On a host it runs as a script under bootstrap.py; here each caller gets a fresh copy under its own name,
so one test's changes to module state (STATE, say) never reach another's.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

AGENT = Path(__file__).resolve().parents[2] / "upgrader" / "agent" / "agent.py"


def load(name: str, state: Path | None = None) -> ModuleType:
    """A fresh copy of the agent's module named ``name``; ``state`` stands in for the host's /var/lib/upgrader."""
    spec = importlib.util.spec_from_file_location(name, AGENT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if state is not None:
        module.__dict__["STATE"] = str(state)  # a module global the agent reads at call time
    return module
