"""The host agent: a stdlib-only script sent over SSH and run with one program per call.

One round trip per phase per host is what makes upgrades and emergency
rollbacks fast; each operation inside the program is still an argv-level,
journaled step on the host (``/var/lib/upgrader/<component>/journal.jsonl``).
"""

from __future__ import annotations

import base64
import json
import zlib
from functools import cache
from importlib import resources
from typing import Any

MARKER = "@@upgrader "
# Runs the compressed agent source given as argv[1]; the program is argv[2].
BOOTSTRAP = (
    "import sys,base64,zlib;"
    "exec(compile(zlib.decompress(base64.b64decode(sys.argv[1])),'upgrader-agent','exec'))"
)


@cache
def packed_source() -> str:
    source = resources.files(__package__).joinpath("agent.py").read_bytes()
    return base64.b64encode(zlib.compress(source, 9)).decode()


def pack_program(program: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(program, sort_keys=True).encode()).decode()


def command(program: dict[str, Any], python: str = "python3") -> list[str]:
    """The argv that runs ``program`` on a host (quoted once, by the transport)."""
    # -I: ignore PYTHON* variables and user site-packages; -S: no site import (faster start-up).
    return [python, "-I", "-S", "-c", BOOTSTRAP, packed_source(), pack_program(program)]


def parse_output(stdout: str) -> list[dict[str, Any]]:
    """Operation results, in order; lines that are not ours (a login banner, say) are ignored."""
    results = []
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            try:
                results.append(json.loads(line[len(MARKER):]))
            except json.JSONDecodeError:
                continue
    return results
