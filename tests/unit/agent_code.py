"""The host agent's program (upgrader/agent/build.py joins its modules) as a module, for tests that run it
on real files, and as a file, for tests that start it as a process.

On a host it runs under bootstrap.py; here each caller gets a fresh copy under its own name, so one test's
changes to module state (STATE, say) never reach another's.  Both are the very text a host is sent.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

from upgrader.agent import build

_DIRECTORY = tempfile.mkdtemp(prefix="upgrader-agent-")  # a directory of its own, removed at exit
atexit.register(shutil.rmtree, _DIRECTORY, True)
AGENT = build.program_file(Path(_DIRECTORY))


def load(name: str, state: Path | None = None) -> ModuleType:
    """A fresh copy of the agent's program as module ``name``; ``state`` stands in for the host's /var/lib/upgrader."""
    module = ModuleType(name)
    module.__file__ = str(AGENT)
    exec(compile(build.program(), str(AGENT), "exec"), module.__dict__)
    if state is not None:
        module.__dict__["STATE"] = str(state)  # a module global the agent reads at call time
    return module
