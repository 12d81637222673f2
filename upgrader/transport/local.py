"""A local transport: hosts that are directory trees on this machine, each running the REAL agent.

As fabric ships ``fabric.testing``, upgrader ships the fake remote with the package, so the engine
and anything built on it can be run without SSH or a VM (tests/fakes builds its fleets on this).
What is real: the engine's side of the protocol (``engine.remote``: bootstrap, packed agent, a pong
before each program, END lines) and every line of the agent: its program lock, host lock, journal,
staging from a real tarball, switch, migrate, checks, rollback.  What is stood in: the host's
filesystem is ``<tree>/…`` (every absolute path the controller sends under /opt, /etc, /var, /srv
or /home is rebased into the tree, and the tree is cut out of what comes back, so journals read like
a real host's), the agent's STATE directory is ``<tree>/var/lib/upgrader``, and ``systemctl`` is a
shell script (``SYSTEMCTL``) keeping each unit's state in a file.

Faults a test can set: ``LocalHost.unreachable`` (new connections and streams raise TransportError),
``LocalHost.before_program`` (callbacks run with each program, as the controller built it, before it
is sent), and the ``on_program`` hook of a transport, which may kill the whole ``Controller``: every
transport of it then raises ``ControllerKilled`` (a BaseException, as a SIGKILL leaves nothing to
catch) and the agents see their stdin close, as on a dropped SSH connection.

Not for production and never the only test of SSH behaviour: tests/vm runs the same engine over real SSH.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import functools
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from upgrader import agent
from upgrader.agent import build
from upgrader.errors import TransportError
from upgrader.transport.base import Endpoint, Result, Timeouts


@functools.cache
def agent_file() -> Path:
    """The program a host is sent (agent/build.py), written once per process into a directory of its own:
    never a shared path another user could have planted a file at; removed when the process ends."""
    directory = tempfile.mkdtemp(prefix="upgrader-agent-")
    atexit.register(shutil.rmtree, directory, True)
    return build.program_file(Path(directory))


PREFIXES = ("/opt/", "/etc/", "/var/", "/srv/", "/home/")
Hook = Callable[["LocalHost", dict[str, Any], bool], None]  # (host, program, done): before and after it runs

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
    """The controller process "died" here (``Controller.kill``); nothing in the engine catches it."""


def install_systemctl(bin_dir: Path) -> Path:
    """Write the stand-in ``systemctl`` into ``bin_dir`` (put first on the agents' PATH); its path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    systemctl = bin_dir / "systemctl"
    systemctl.write_text(SYSTEMCTL)
    systemctl.chmod(0o755)
    return systemctl


def no_hook(host: LocalHost, program: dict[str, Any], done: bool) -> None:
    """The default ``on_program``: nothing happens around a program."""


class LocalHost:
    """One host: a directory tree (its filesystem), its units' states, and the faults a test may set."""

    def __init__(self, name: str, tree: Path, bin_dir: Path) -> None:
        self.name = name
        self.tree = tree
        self.bin_dir = bin_dir
        self.systemd = tree / "run" / "fake-systemd"
        self.before_program: list[Callable[[LocalHost, dict[str, Any]], None]] = []
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


class Controller:
    """The transports of one controller process (one pool), which share one fate: see ``ControllerKilled``."""

    def __init__(self) -> None:
        self.dead = False
        self.streams: list[AgentStream] = []
        self.lock = threading.Lock()

    def kill(self) -> None:
        """Die here: every transport of this controller raises ControllerKilled from now on, and every agent
        it started reads EOF (it finishes the program it is running, as after a dropped SSH connection)."""
        self.dead = True
        with self.lock:
            streams = list(self.streams)
        for s in streams:
            s.hang_up()

    def close(self) -> None:
        """End every agent this controller started (each finishes the program it is running)."""
        with self.lock:
            streams, self.streams = list(self.streams), []
        for s in streams:
            s.close()


class AgentStream:
    """A serving agent on a local host: a local process speaking the agent's stdin/stdout protocol."""

    def __init__(
        self,
        host: LocalHost,
        controller: Controller,
        argv: tuple[str, ...],
        trigger: Hook = no_hook,
    ) -> None:
        self._host = host
        self._controller = controller
        self._argv = argv
        self._trigger = trigger
        self._stderr = open(host.tree / f".agent-{time.monotonic_ns()}.err", "w+b")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _LOADER, str(agent_file()), str(host.state_dir)],
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


class LocalTransport:
    """The engine's ``Transport`` for one local host (put/get copy files into its tree; stream starts the agent)."""

    def __init__(
        self,
        host: LocalHost,
        endpoint: Endpoint,
        timeouts: Timeouts | None = None,
        controller: Controller | None = None,
        trigger: Hook = no_hook,
    ) -> None:
        """``controller``: the transports that share this one's fate (a new one of its own if None);
        ``trigger``: called with each program sent, before (done False) and after it ran (done True)."""
        self.host = host
        self.endpoint = endpoint
        self.timeouts = timeouts or Timeouts()
        self._controller = controller or Controller()
        self._trigger = trigger

    def _reachable(self) -> None:
        if self._controller.dead:
            raise ControllerKilled
        if self.host.unreachable:
            raise TransportError(self.host.name, "connection refused (local host marked unreachable)", "check the host")

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
