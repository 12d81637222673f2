"""Fake hosts for engine tests: the REAL agent (upgrader/agent/, built as a host gets it), run as a local
process per host, against a directory tree per host, with a stand-in ``systemctl``.  No SSH, no VM, no mock
of the agent.

What is real: the engine, ``engine.remote`` (the serving protocol, END lines, pong before each program),
``engine.endpoints.Pool`` and every line of the agent — its program lock (flock, takeover, kill of a
verified holder), host lock, journal, staging from a real tarball, switch, migrate, checks, rollback.
What is stood in: the host's filesystem is ``<tree>/…`` (every absolute path the controller sends
under /opt, /etc, /var, /srv or /home is rebased into the tree, and the tree is cut out of what comes
back, so journals read like a real host's), the agent's STATE directory is ``<tree>/var/lib/upgrader``,
and ``systemctl`` is a shell script keeping each unit's state in a file.

Usage (see tests/unit/test_engine_fake_hosts.py for complete examples)::

    from fakes.agent_host import FakeHosts, release_tarball

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

import base64
import contextlib
import hashlib
import io
import json
import os
import select
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from upgrader import agent
from upgrader.agent import build
from upgrader.engine.endpoints import Pool
from upgrader.errors import TransportError
from upgrader.transport.base import Endpoint, Result, Timeouts

REPO = Path(__file__).resolve().parents[2]
AGENT_FILE = build.program_file(Path(tempfile.gettempdir()))  # the program a host is sent (agent/build.py)
PREFIXES = ("/opt/", "/etc/", "/var/", "/srv/", "/home/")

# Loads the agent's program as a module (not __main__, so it does not start by itself), points its STATE into the
# tree, and serves: exactly what the bootstrap does on a host, but for where STATE is.  The agent's
# path is on the command line, so agent.is_agent_holding recognises this process as an agent.
_LOADER = (
    "import sys, types\n"
    "path, state = sys.argv[1], sys.argv[2]\n"
    "m = types.ModuleType('upgrader_agent_fake'); m.__file__ = path\n"
    "exec(compile(open(path).read(), path, 'exec'), m.__dict__)\n"
    "m.STATE = state\n"
    "sys.exit(m.main())\n"
)

SYSTEMCTL = r"""#!/bin/sh
# Stand-in systemctl for fake hosts: a unit's state is the file $FAKE_SYSTEMD/<unit>.
cmd="$1"; shift
[ "${1#--}" != "$1" ] && shift   # systemctl kill --signal=SIGKILL UNIT
unit="$1"; d="$FAKE_SYSTEMD"; export UNIT="$unit"
case "$cmd" in
  start)
    if [ -f "$d/$unit.start" ] && ! sh "$d/$unit.start" >"$d/$unit.out" 2>&1; then
      echo failed >"$d/$unit"; echo "Job for $unit failed because the control process exited with error code." >&2
      exit 1
    fi
    echo active >"$d/$unit";;
  stop)
    [ -f "$d/$unit.stop" ] && sh "$d/$unit.stop"
    echo inactive >"$d/$unit";;
  kill) echo failed >"$d/$unit";;
  is-active)
    state=$(cat "$d/$unit" 2>/dev/null || echo inactive); echo "$state"; [ "$state" = active ];;
  reset-failed) ;;
  *) echo "fake systemctl: unsupported command $cmd" >&2; exit 2;;
esac
"""


class ControllerKilled(BaseException):  # a BaseException: it stands for a SIGKILL, not an error
    """The controller process "died" here (see FakeHosts.kill_controller); nothing in the engine catches it."""


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


class FakeHost:
    """One host: a directory tree (its filesystem) and its units' states."""

    def __init__(self, name: str, tree: Path, bin_dir: Path) -> None:
        self.name = name
        self.tree = tree
        self.bin_dir = bin_dir
        self.systemd = tree / "run" / "fake-systemd"
        self.before_program: list[Callable[[FakeHost, dict[str, Any]], None]] = []
        self.unreachable = False
        self.programs: list[dict[str, Any]] = []  # every program sent, as the controller built it
        for d in (tree, self.systemd, tree / "opt", tree / "etc"):
            d.mkdir(parents=True, exist_ok=True, mode=0o755)
        for sticky in (tree / "tmp", tree / "var" / "tmp"):
            sticky.mkdir(parents=True, exist_ok=True)
            os.chmod(sticky, 0o1777)

    # -- the filesystem -----------------------------------------------------
    def path(self, host_path: str) -> Path:
        """Where the host's ``host_path`` is on this machine."""
        return self.tree / host_path.lstrip("/")

    def rebase(self, value: Any) -> Any:
        """``value`` (a program, an argv, a path) with the host's absolute paths moved into the tree."""
        if isinstance(value, str):
            return str(self.tree) + value if value.startswith(PREFIXES) else value
        if isinstance(value, list):
            return [self.rebase(v) for v in value]
        if isinstance(value, dict):
            return {k: self.rebase(v) for k, v in value.items()}
        return value

    def unrebase(self, text: str) -> str:
        return text.replace(str(self.tree), "")

    def install(
        self, root: str, version: str, files: Mapping[str, str | bytes] | None = None, current: bool = True
    ) -> Path:
        """Lay down releases/<version> under ``root`` as a past upgrade left it (and make it current)."""
        releases = self.path(root) / "releases"
        release = releases / version
        release.mkdir(parents=True, exist_ok=True)
        for name, content in (files or {}).items():
            target = release / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode() if isinstance(content, str) else content)
        if current:
            link = self.path(root) / "current"
            link.unlink(missing_ok=True)
            link.symlink_to(os.path.join("releases", version))
        return release

    def current(self, root: str) -> str | None:
        link = self.path(root) / "current"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def releases(self, root: str) -> list[str]:
        d = self.path(root) / "releases"
        return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")) if d.is_dir() else []

    # -- the service manager ------------------------------------------------
    def unit(self, name: str, *, start: str | None = None, stop: str | None = None, state: str = "active") -> None:
        """Define unit ``name``: sh snippets run by start/stop ($TREE is the host's tree), and its state now."""
        for kind, snippet in (("start", start), ("stop", stop)):
            hook = self.systemd / f"{name}.{kind}"
            if snippet is None:
                hook.unlink(missing_ok=True)
            else:
                hook.write_text(snippet + "\n")
        (self.systemd / name).write_text(state + "\n")

    def state(self, unit: str) -> str:
        f = self.systemd / unit
        return f.read_text().strip() if f.exists() else "inactive"

    # -- what the agent keeps -------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.tree / "var" / "lib" / "upgrader"

    def journal(self, component: str) -> list[dict[str, Any]]:
        f = self.state_dir / component / "journal.jsonl"
        return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []

    def lock(self, component: str) -> dict[str, Any] | None:
        f = self.state_dir / component / "lock.json"
        return json.loads(f.read_text()) if f.exists() else None

    def env(self) -> dict[str, str]:
        return {
            "PATH": f"{self.bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "FAKE_SYSTEMD": str(self.systemd),
            "TREE": str(self.tree),
            "LANG": "C.UTF-8",
        }


class _Controller:
    """The transports of one pool: one controller process, which can be killed."""

    def __init__(self) -> None:
        self.dead = False
        self.streams: list[AgentStream] = []
        self.lock = threading.Lock()


class AgentStream:
    """A serving agent on a fake host: a local process speaking the agent's stdin/stdout protocol."""

    def __init__(
        self,
        host: FakeHost,
        controller: _Controller,
        argv: tuple[str, ...],
        trigger: Callable[[FakeHost, dict[str, Any], bool], None],
    ) -> None:
        self._host = host
        self._controller = controller
        self._argv = argv
        self._trigger = trigger
        self._stderr = open(host.tree / f".agent-{time.monotonic_ns()}.err", "w+b")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _LOADER, str(AGENT_FILE), str(host.state_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=host.env(),
            cwd=host.tree,
        )
        self._pending = b""
        self._preamble = True

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    @property
    def pid(self) -> int:
        return self._proc.pid

    def exchange(self, line: str | None, *, until: str, timeout: float) -> Result:
        if self._controller.dead:
            raise ControllerKilled
        started = time.monotonic()
        program: dict[str, Any] | None = None
        if line is not None:
            line, program = self._unpack(line)
            if program is not None and program["ops"]:
                self._host.programs.append(program)
                for hook in list(self._host.before_program):
                    hook(self._host, program)
                self._trigger(self._host, program, False)
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write((line + "\n").encode())
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                return self._result(-1, b"", started)
        out, found = self._read(until.encode(), started + timeout)
        if out is None:
            pending, self._pending = self._pending, b""
            self.close()
            return self._result(-1, pending, started, timed_out=True)
        if program is not None and program["ops"]:
            self._trigger(self._host, program, True)
        # As FabricStream: 0 once the END line came (remote.call reads the status from it), else how it ended.
        return self._result(0 if found else (self._proc.returncode or -1), out, started)

    def _unpack(self, line: str) -> tuple[str, dict[str, Any] | None]:
        """The program in ``line`` (the first one comes after the bootstrap and the packed agent), rebased."""
        if self._preamble:
            self._preamble = False
            boot, packed, line = line.split("\n")
            # What the controller ships is this very agent: the stand-in loader replaces only the bootstrap.
            assert packed == agent.packed_source() and base64.b64decode(boot).decode() == agent.bootstrap()
        program = json.loads(base64.b64decode(line))
        return agent.pack_program(self._host.rebase(program)), program

    def _read(self, marker: bytes, deadline: float) -> tuple[bytes | None, bool]:
        """(bytes up to and including the first complete line starting with ``marker``, True); what came
        before the agent exited, False; (None, False) on timeout."""
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        buf = self._pending
        while True:
            at = 0 if buf.startswith(marker) else buf.find(b"\n" + marker) + 1
            newline = buf.find(b"\n", at) if (at > 0 or buf.startswith(marker)) else -1
            if newline >= 0:
                self._pending = buf[newline + 1 :]
                return buf[: newline + 1], True
            left = deadline - time.monotonic()
            if left <= 0:
                self._pending = buf
                return None, False
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:  # the agent ended without finishing this exchange
                self._proc.wait()
                self._pending = b""
                return buf, False
            buf += chunk

    def _result(self, code: int, out: bytes, started: float, timed_out: bool = False) -> Result:
        self._stderr.seek(0)
        err = self._stderr.read()[-4000:].decode("utf-8", "replace")
        return Result(
            self._host.name,
            self._argv,
            code,
            self._host.unrebase(out.decode("utf-8", "replace")),
            self._host.unrebase(err),
            time.monotonic() - started,
            timed_out=timed_out,
        )

    def hang_up(self) -> None:
        """The SSH connection went: the agent reads EOF, finishes the program it is running and exits."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.close()

    def close(self) -> None:
        self.hang_up()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr.close()


class FakeTransport:
    """The engine's Transport for one fake host (put/get copy files into the tree; stream starts the agent)."""

    def __init__(
        self,
        host: FakeHost,
        endpoint: Endpoint,
        timeouts: Timeouts,
        controller: _Controller,
        trigger: Callable[[FakeHost, dict[str, Any], bool], None],
    ) -> None:
        self.host = host
        self.endpoint = endpoint
        self.timeouts = timeouts
        self._controller = controller
        self._trigger = trigger

    def _reachable(self) -> None:
        if self._controller.dead:
            raise ControllerKilled
        if self.host.unreachable:
            raise TransportError(self.host.name, "connection refused (fake host marked unreachable)", "check the host")

    def stream(self, argv: Sequence[str], *, sudo: bool = False) -> AgentStream:
        self._reachable()
        assert list(argv)[-1] == agent.source_key(), argv  # the serving command, as the engine builds it
        s = AgentStream(self.host, self._controller, tuple(argv), self._trigger)
        with self._controller.lock:
            self._controller.streams.append(s)
        return s

    def put(self, local: Path, remote: str, *, timeout: float | None = None) -> None:
        self._reachable()
        target = self.host.path(remote)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, target)

    def get(self, remote: str, local: Path, *, timeout: float | None = None) -> None:
        self._reachable()
        shutil.copyfile(self.host.path(remote), local)

    def run(
        self, argv: Sequence[str], *, sudo: bool = False, timeout: float | None = None, idempotent: bool = False
    ) -> Result:
        self._reachable()
        started = time.monotonic()
        proc = subprocess.run(
            self.host.rebase(list(argv)),
            capture_output=True,
            text=True,
            env=self.host.env(),
            timeout=timeout or self.timeouts.command,
            cwd=self.host.tree,
        )
        return Result(
            self.host.name,
            tuple(argv),
            proc.returncode,
            self.host.unrebase(proc.stdout),
            self.host.unrebase(proc.stderr),
            time.monotonic() - started,
        )

    def close(self) -> None:
        with self._controller.lock:
            mine = [s for s in self._controller.streams if s._host is self.host]
        for s in mine:
            s.close()


class FakeHosts:
    """A lab of fake hosts under ``base``; ``pool()`` is a controller's view of them."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.bin_dir = base / "bin"
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        systemctl = self.bin_dir / "systemctl"
        systemctl.write_text(SYSTEMCTL)
        systemctl.chmod(0o755)
        self.hosts: dict[str, FakeHost] = {}
        self._controllers: list[_Controller] = []
        self._kills: list[tuple[str, str, bool]] = []

    def add(self, name: str) -> FakeHost:
        self.hosts[name] = FakeHost(name, self.base / name, self.bin_dir)
        return self.hosts[name]

    def __getitem__(self, name: str) -> FakeHost:
        return self.hosts[name]

    def pool(self, parallel: int = 8, timeouts: Timeouts | None = None) -> Pool:
        """A new controller: an engine Pool over every host (its transports share one fate, see kill_controller)."""
        controller = _Controller()
        self._controllers.append(controller)
        t = timeouts or Timeouts()

        def factory(endpoint: Endpoint) -> FakeTransport:
            return FakeTransport(self.hosts[endpoint.name], endpoint, t, controller, self._trigger(controller))

        endpoints = {n: Endpoint(name=n, address=f"fake:{n}") for n in self.hosts}
        return Pool(endpoints, factory=factory, timeouts=t, parallel=parallel)

    def kill_controller(self, host: str, op: str, *, after: bool = False) -> None:
        """Kill the controller when it sends ``host`` a program with operation ``op`` (once; see module doc)."""
        self._kills.append((host, op, after))

    def _trigger(self, controller: _Controller) -> Callable[[FakeHost, dict[str, Any], bool], None]:
        def fire(host: FakeHost, program: dict[str, Any], done: bool) -> None:
            ops = {o.get("op") for o in program["ops"]}
            for kill in list(self._kills):
                if kill[0] == host.name and kill[1] in ops and kill[2] == done:
                    self._kills.remove(kill)
                    self._die(controller)
                    raise ControllerKilled(
                        f"controller killed {'after' if done else 'before'} {kill[1]} on {host.name}"
                    )

        return fire

    @staticmethod
    def _die(controller: _Controller) -> None:
        controller.dead = True
        with controller.lock:
            streams = list(controller.streams)
        for s in streams:
            s.hang_up()

    def close(self) -> None:
        """End every agent process (each finishes the program it is running, as after a hang-up)."""
        for controller in self._controllers:
            with controller.lock:
                streams, controller.streams = list(controller.streams), []
            for s in streams:
                s.close()
