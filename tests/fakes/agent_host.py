"""Fake hosts for engine tests: the REAL agent (upgrader/agent/, built as a host gets it), run as a local
process per host, against a directory tree per host, with a stand-in ``systemctl``.  No SSH, no VM, no mock
of the agent.
The hosts and their transport ship with the package (upgrader/transport/local.py, as fabric ships
``fabric.testing``); this module makes a lab of them and a controller's ``Pool`` over it.

What is real: the engine, ``engine.remote`` (the serving protocol, END lines, pong before each program),
``engine.pool.Pool`` and every line of the agent — its program lock (flock, takeover, kill of a
verified holder), host lock, journal, staging from a real tarball, switch, migrate, checks, rollback.
What is stood in: the host's filesystem is ``<tree>/…`` (every absolute path the controller sends
under /opt, /etc, /var, /srv or /home is rebased into the tree, and the tree is cut out of what comes
back, so journals read like a real host's), the agent's STATE directory is ``<tree>/var/lib/upgrader``,
and ``systemctl`` is a shell script keeping each unit's state in a file.

Usage (see tests/unit/test_engine_fake_hosts.py for complete examples)::

    from tests.fakes.agent_host import FakeHosts, release_tarball

    hosts = FakeHosts(tmp_path / "hosts")            # a lab of fake hosts; close() ends their agents
    h = hosts.add("ny-1")
    h.install("/opt/app", "5.1.0", {"health": "ok\\n"})  # a release as a past upgrade left it, current
    h.unit("app.service", start='grep -qx ok "$TREE/opt/app/current/health"')  # fails on a bad release
    sha = release_tarball(artifacts / "app-5.2.0.tar.gz", {"health": "ok\\n"})
    pool = hosts.pool()                              # an engine Pool whose transports are FakeTransports
    Apply(plan, pool, journal, progress, artifacts=artifacts, operator="t").run()
    h.current("/opt/app"), h.state("app.service"), h.journal("app"), h.lock("app")

Unit states: ``active`` after a start whose ``start`` snippet (sh, with $TREE and $UNIT set) exited 0,
``failed`` after one that did not, ``inactive`` after a stop (a ``stop`` snippet may hang, to exercise
stop_timeout and SIGKILL).  A unit without snippets just flips between active and inactive.

Faults: ``hosts.kill_controller(host, op, after=False)`` makes the controller "die" when it sends
``host`` a program containing operation ``op`` (before the host gets it, or after the host ran it):
every transport of that pool then raises ``ControllerKilled`` (a BaseException, as a SIGKILL would
leave nothing to catch), the agents see their stdin close as on a dropped SSH connection, and the
journals stay as a killed run leaves them.  ``h.before_program`` holds callbacks run with each
program (as the controller built it) before it is sent: a place to start a second controller (an
emergency rollback) mid-run, or to change the host.  ``h.unreachable = True`` makes new connections
and streams fail with TransportError.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from upgrader.engine.pool import Pool
from upgrader.transport.base import Endpoint, Timeouts
from upgrader.transport.local import (
    AgentStream,
    Controller,
    ControllerKilled,
    LocalHost,
    LocalTransport,
    install_systemctl,
)

__all__ = ["AgentStream", "ControllerKilled", "FakeHost", "FakeHosts", "FakeTransport", "release_tarball"]

FakeHost = LocalHost  # the names the suite has always used
FakeTransport = LocalTransport


def release_tarball(path: Path, files: Mapping[str, str | bytes], mode: int = 0o644) -> str:
    """Write a release tarball holding ``files`` (name → content); return its sha256 (for the playbook)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, content in sorted(files.items()):
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


class FakeHosts:
    """A lab of fake hosts under ``base``; ``pool()`` is a controller's view of them."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.bin_dir = base / "bin"
        install_systemctl(self.bin_dir)
        self.hosts: dict[str, FakeHost] = {}
        self._controllers: list[Controller] = []
        self._kills: list[tuple[str, str, bool]] = []

    def add(self, name: str) -> FakeHost:
        self.hosts[name] = FakeHost(name, self.base / name, self.bin_dir)
        return self.hosts[name]

    def __getitem__(self, name: str) -> FakeHost:
        return self.hosts[name]

    def pool(self, parallel: int = 8, timeouts: Timeouts | None = None) -> Pool:
        """A new controller: an engine Pool over every host (its transports share one fate, see kill_controller)."""
        controller = Controller()
        self._controllers.append(controller)
        t = timeouts or Timeouts()

        def factory(endpoint: Endpoint) -> FakeTransport:
            return FakeTransport(self.hosts[endpoint.name], endpoint, t, controller, self._trigger(controller))

        endpoints = {n: Endpoint(name=n, address=f"fake:{n}") for n in self.hosts}
        return Pool(endpoints, factory=factory, timeouts=t, parallel=parallel)

    def kill_controller(self, host: str, op: str, *, after: bool = False) -> None:
        """Kill the controller when it sends ``host`` a program with operation ``op`` (once; see module doc)."""
        self._kills.append((host, op, after))

    def _trigger(self, controller: Controller) -> Callable[[FakeHost, dict[str, Any], bool], None]:
        def fire(host: FakeHost, program: dict[str, Any], done: bool) -> None:
            ops = {o.get("op") for o in program["ops"]}
            for kill in list(self._kills):
                if kill[0] == host.name and kill[1] in ops and kill[2] == done:
                    self._kills.remove(kill)
                    controller.kill()
                    raise ControllerKilled(
                        f"controller killed {'after' if done else 'before'} {kill[1]} on {host.name}"
                    )

        return fire

    def close(self) -> None:
        """End every agent process (each finishes the program it is running, as after a hang-up)."""
        for controller in self._controllers:
            controller.close()
