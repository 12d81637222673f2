"""`upgrader` as a process whose hosts are fake hosts: the real CLI, with the local transport instead of SSH.

    python -m tests.fakes.cli HOSTS_DIR worker -i inventory.yml --datacenter ny
    python -m tests.fakes.cli HOSTS_DIR apply playbook.yml -i inventory.yml --yes --engine temporal

Each host of the inventory is reached as the local host whose tree is HOSTS_DIR/<name> (laid out by
``FakeHosts(HOSTS_DIR)``, tests/fakes/agent_host.py), running the real agent; every other line is the
CLI's own.  Processes started this way share the hosts through their trees, as workers share real hosts,
and can be stopped by PID like `upgrader worker` under systemd (tests/unit/test_temporal_rolling.py).

``$UPGRADER_TEST_WORKFLOWS`` (``module:Class,...``) stands for a new build whose workflow code changed: the
control worker registers those classes instead of ``upgrader.temporal.worker.WORKFLOWS``.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from upgrader.engine.pool import Pool
from upgrader.transport.base import Endpoint, Transport
from upgrader.transport.local import LocalHost, LocalTransport

WORKFLOWS_ENV = "UPGRADER_TEST_WORKFLOWS"


def local_transports(hosts: Path) -> None:
    """Every Pool made from now on reaches its hosts under ``hosts`` (Pool's default factory is SSH)."""

    def factory(pool: Pool, endpoint: Endpoint) -> Transport:
        host = LocalHost(endpoint.name, hosts / endpoint.name, hosts / "bin")
        return LocalTransport(host, endpoint, pool._timeouts)

    Pool._fabric = factory  # type: ignore[method-assign,assignment]


def new_build(spec: str) -> None:
    from upgrader.temporal import worker

    classes = []
    for item in spec.split(","):
        module, _, name = item.partition(":")
        classes.append(getattr(importlib.import_module(module), name))
    worker.WORKFLOWS = tuple(classes)


def main(argv: list[str]) -> int:
    local_transports(Path(argv[0]).resolve())
    if os.environ.get(WORKFLOWS_ENV):
        new_build(os.environ[WORKFLOWS_ENV])
    from upgrader.cli.main import main as upgrader

    return upgrader(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
