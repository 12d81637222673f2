"""A small fleet of fake hosts for driving the real CLI in-process (tests/unit/test_fleet_model.py).

    fleet = Fleet.build(tmp, {"ny": ["ny-1", "ny-2"], "ch": ["ch-1"]}, start={"ny-1": "5.0.0"})
    with fleet.patched():                      # the CLI's pools talk to these fake hosts, nothing else
        result = fleet.cli(fleet.desk_a, "apply", str(fleet.playbook("5.2.0")), "-i", str(fleet.inventory),
                           "--yes")
    result.code, result.out, fleet.hosts["ny-1"].current(ROOT)

Three releases of one component, ``app``: 5.0.0 → 5.1.0 → 5.2.0.  The 5.2.0 playbook names 5.1.0 as a
hop (``via``), so a host on 5.0.0 goes there in two hops.  Each host's health check and service start
read per-host markers (``/etc/app/bad-<version>``, ``/etc/app/crash-<version>``): a host "fails its
checks" or "fails to start" on a release when the marker is there; the release tarballs are the same
for every host.  What a host runs, and whether that release passes on it, is read from its tree by
``Fleet.verified`` — the model's oracle, independent of what any controller journaled.

``Fleet.cli`` runs ``upgrader.cli.main`` in-process with a given state directory (a controller's desk):
``pool_for`` is patched to give a pool over the fake hosts (``FakeHosts.pool``), so everything else —
argument parsing, inputs, planning, the engine, journals, locks, audit — is the real code path.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

from tests.fakes.agent_host import ControllerKilled, FakeHosts, release_tarball

ROOT = "/opt/app"
UNIT = "app.service"
COMPONENT = "app"
RELEASES = ("5.0.0", "5.1.0", "5.2.0")
# Passes unless /etc/app/bad-<version of current> exists on the host ($0 is the root, $1 the marker dir).
HEALTH = [
    "/bin/sh",
    "-c",
    'v=$(basename "$(readlink "$0/current")"); test "$(cat "$0/current/health")" = ok && test ! -e "$1/bad-$v"',
    ROOT,
    "/etc/app",
]
START = 'v=$(basename "$(readlink "$TREE/opt/app/current")"); [ ! -e "$TREE/etc/app/crash-$v" ]'


def _release_files(version: str) -> dict[str, str]:
    return {"VERSION": version + "\n", "health": "ok\n"}


@dataclass
class Result:
    """One CLI command: its exit code (None if the controller was killed), everything it printed."""

    argv: list[str]
    code: int | None
    out: str
    killed: bool = False

    def json_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.out.splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(line))
        return lines


class _ThreadOutput(io.TextIOBase):
    """sys.stdout/stderr while commands run: each command thread writes to its own buffer.

    A thread that is not a command's (an engine worker) writes to every command buffer that is open,
    so nothing it says is lost when two commands run together."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.open: list[io.StringIO] = []
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        mine = getattr(self.local, "buf", None)
        if mine is not None:
            mine.write(text)
        else:
            with self.lock:
                for buf in self.open:
                    buf.write(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


@dataclass
class Fleet:
    tmp: Path
    hosts: FakeHosts
    dcs: dict[str, list[str]]
    inventory: Path
    artifacts: Path
    desk_a: Path  # the controller that ran everything so far
    desk_b: Path  # a second controller (the desk's other machine): an empty state directory at first
    books: dict[str, Path] = field(default_factory=dict)
    gate_hook: Callable[[Path, str], None] | None = None  # called when the engine starts waiting at a gate
    _output: _ThreadOutput = field(default_factory=_ThreadOutput)
    in_command: int = 0

    @classmethod
    def build(cls, tmp: Path, dcs: dict[str, list[str]], start: dict[str, str]) -> Fleet:
        artifacts = tmp / "artifacts"
        shas = {v: release_tarball(artifacts / f"app-{v}.tar.gz", _release_files(v)) for v in RELEASES[1:]}
        inventory = {
            "name": "fake",
            "defaults": {"user": "deploy"},
            "roles": {"app": [COMPONENT]},
            "datacenters": {
                dc: {"hosts": {h: {"address": f"10.9.{i}.{j + 1}", "roles": ["app"]} for j, h in enumerate(names)}}
                for i, (dc, names) in enumerate(dcs.items())
            },
        }
        (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
        hosts = FakeHosts(tmp / "hosts")
        for names in dcs.values():
            for name in names:
                h = hosts.add(name)
                version = start[name]
                if version == "5.1.0":  # as a past upgrade from 5.0.0 left it: 5.0.0 still staged, recorded
                    h.install(ROOT, "5.0.0", _release_files("5.0.0"), current=False)
                h.install(ROOT, version, _release_files(version))
                h.path("/etc/app").mkdir(parents=True, exist_ok=True)
                h.unit(UNIT, start=START)
        fleet = cls(tmp, hosts, dcs, tmp / "inventory.yml", artifacts, tmp / "desk-a", tmp / "desk-b")
        for gates in ("auto", "manual"):
            for version in RELEASES[1:]:
                fleet.books[f"{version}-{gates}"] = fleet._write_playbook(version, shas, gates)
        return fleet

    def _write_playbook(self, version: str, shas: dict[str, str], gates: str) -> Path:
        book: dict[str, Any] = {
            "component": COMPONENT,
            "vendor": "Example Vendor",
            "version": version,
            "artifact": {"file": f"app-{version}.tar.gz", "sha256": shas[version]},
            "upgrade_from": ">=5.0,<5.1" if version == "5.1.0" else ">=5.1,<5.2",
            "install": {"root": ROOT, "keep_releases": 4},
            "service": {"systemd": UNIT, "start_timeout": "3s", "stop_timeout": "3s"},
            "prechecks": {"min_free_disk_mb": 0},
            "checks": [
                {"name": "health", "command": {"argv": HEALTH}, "retries": 0, "interval": "10ms", "timeout": "2s"},
                {
                    "name": "version",
                    "version": {"argv": ["cat", "{release}/VERSION"]},
                    "retries": 0,
                    "interval": "10ms",
                    "timeout": "2s",
                },
            ],
            "canary": {"hosts": 1, "bake": "30ms", "bake_interval": "10ms"},
            "rollout": {"batch": 1, "max_failures": 1},
            "rollback": {"on_failure": "host"},
        }
        if version == "5.2.0":
            book["via"] = [
                {
                    "version": "5.1.0",
                    "upgrade_from": ">=5.0,<5.1",
                    "artifact": {"file": "app-5.1.0.tar.gz", "sha256": shas["5.1.0"]},
                }
            ]
        if gates == "manual":
            book["canary"].update(promote="manual", promote_timeout="600ms")
            book["rollout"]["pause_between_datacenters"] = "manual"
        path = self.tmp / f"app-{version}-{gates}.yml"
        path.write_text(yaml.safe_dump(book, sort_keys=False))
        return path

    # -- the oracle: read on the hosts ------------------------------------------------
    def version(self, host: str) -> str | None:
        return self.hosts[host].current(ROOT)

    def verified(self, host: str) -> bool:
        """The host runs a release whose checks pass on it, its service up: read on the host itself."""
        h = self.hosts[host]
        v = h.current(ROOT)
        if v is None or h.state(UNIT) != "active":
            return False
        release = h.path(f"{ROOT}/releases/{v}")
        return (
            (release / "health").is_file()
            and (release / "health").read_text() == "ok\n"
            and not h.path(f"/etc/app/bad-{v}").exists()
        )

    def lock(self, host: str) -> dict[str, Any] | None:
        return self.hosts[host].lock(COMPONENT)

    def mark(self, host: str, kind: str, version: str) -> None:
        """kind 'bad': the host's checks fail on ``version``; 'crash': its service does not start on it."""
        self.hosts[host].path(f"/etc/app/{kind}-{version}").write_text("")

    # -- running the CLI ----------------------------------------------------------------
    @contextlib.contextmanager
    def patched(self) -> Iterator[None]:
        """Every pool the CLI makes is over the fake hosts; gate waits call ``gate_hook`` first; SIGINT
        outside a command is recorded, not raised (it must not end the test run)."""
        from upgrader.commands import early, live
        from upgrader.engine import gates

        real_wait = gates.wait
        real_signal = signal.signal

        def wait(run_dir: Path, gate: str, **kwargs: Any) -> Any:
            if self.gate_hook is not None:
                self.gate_hook(run_dir, gate)
            return real_wait(run_dir, gate, **kwargs)

        def only_in_main(sig: int, handler: Any) -> Any:
            # Two commands at once run one of them in a thread: only the main thread may install handlers
            # (a real second process would have its own); the thread's command keeps the main one's.
            if threading.current_thread() is not threading.main_thread():
                return signal.getsignal(sig)
            return real_signal(sig, handler)

        def interrupt(signum: int, frame: Any) -> None:
            if self.in_command:
                raise KeyboardInterrupt
            self.stray_signals += 1

        self.stray_signals = 0
        previous = real_signal(signal.SIGINT, interrupt)
        cwd = os.getcwd()
        os.chdir(self.tmp)  # an operator's directory: not this repository (its playbooks/ would be read)
        with (
            mock.patch.object(live, "pool_for", lambda inventory, args: self.hosts.pool(parallel=args.parallel)),
            mock.patch.object(early, "start", lambda argv, state: None),
            mock.patch.object(gates, "wait", wait),
            mock.patch.object(signal, "signal", only_in_main),
            mock.patch.object(sys, "stdout", self._output),
            mock.patch.object(sys, "stderr", self._output),
        ):
            try:
                yield
            finally:
                real_signal(signal.SIGINT, previous)
                os.chdir(cwd)

    stray_signals: int = 0

    def cli(self, desk: Path, *argv: str) -> Result:
        """``upgrader --state-dir DESK ARGV…`` in this thread: its exit code and everything it printed."""
        from upgrader.cli.main import main

        full = ["--state-dir", str(desk), *argv]
        buf = io.StringIO()
        outer = getattr(self._output.local, "buf", None)
        self._output.local.buf = buf
        with self._output.lock:
            self._output.open.append(buf)
        self.in_command += 1
        try:
            code: int | None = main(full)
            killed = False
        except ControllerKilled:
            code, killed = None, True
        except SystemExit as exc:  # argparse: a usage error
            code, killed = (exc.code if isinstance(exc.code, int) else 2), False
        finally:
            self.in_command -= 1
            self._output.local.buf = outer
            with self._output.lock:
                self._output.open.remove(buf)
        return Result(full, code, buf.getvalue(), killed)

    def together(self, first: tuple[Path, list[str]], second: tuple[Path, list[str]]) -> tuple[Result, Result]:
        """Two commands started at the same moment: ``first`` in this thread, ``second`` in another."""
        barrier = threading.Barrier(2)
        out: list[Result] = []

        def other() -> None:
            barrier.wait()
            out.append(self.cli(second[0], *second[1]))

        t = threading.Thread(target=other, name="second-desk")
        t.start()
        barrier.wait()
        a = self.cli(first[0], *first[1])
        t.join(timeout=120)
        assert not t.is_alive(), "the second command did not end"
        return a, out[0]

    def close(self) -> None:
        self.hosts.close()
