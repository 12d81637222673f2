"""The Fabric implementation of ``Transport`` (with ssh.py and gateways.py, the only importers of fabric and paramiko).

Timeouts: connect/banner/auth/channel-open are Paramiko settings; the command
timeout is invoke's; and a watchdog closes the connection if any single
operation overruns its budget anyway (a cut link can stall a read with no
timeout of its own).  Host keys: RejectPolicy plus the inventory's
known_hosts — an unknown or changed key is refused, never learned, on the
jump hop as on the target.

How a connection is made (settings from the inventory only, strict host keys)
is transport/ssh.py; the jump-host connections shared by a run and the pacing
of handshakes are transport/gateways.py.
"""

from __future__ import annotations

import logging
import shlex
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import paramiko
from fabric import Connection
from invoke.exceptions import CommandTimedOut, UnexpectedExit
from paramiko.ssh_exception import SSHException
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from upgrader.errors import TransportError
from upgrader.transport.base import Endpoint, Result, Timeouts
from upgrader.transport.gateways import Gateways, paced
from upgrader.transport.ssh import Refused, Transient, connection, handshake, shut

log = logging.getLogger(__name__)
T = TypeVar("T")

# Bytes one exchange takes from a host before it gives up on it.  The agent's answers are kilobytes
# (each command's output it keeps is at most 1 MiB); a host that streams without end (a broken or
# replaced agent) would otherwise grow the controller, 256 hosts at once, until the timeout.
ANSWER_LIMIT = 64 << 20


def command_line(argv: Sequence[str], *, sudo: bool, user: str) -> str:
    """The one place an argv becomes a shell line: every argument quoted, exactly once."""
    full = ("sudo", "-n", "--", *argv) if sudo and user != "root" else tuple(argv)
    return shlex.join(full)


class FabricTransport:
    def __init__(self, endpoint: Endpoint, timeouts: Timeouts | None = None, gateways: Gateways | None = None) -> None:
        self.endpoint = endpoint
        self.timeouts = timeouts or Timeouts()
        # The pool's, shared by all its hosts; a transport made on its own has its own.
        self._owns_gateways = gateways is None
        self.gateways = gateways or Gateways(self.timeouts)
        self._conn: Connection | None = None
        self._lock = threading.Lock()  # one channel at a time per host keeps ordering obvious

    # -- connection -------------------------------------------------------
    def _open(self) -> Connection:
        if self._conn is not None and self._conn.is_connected:
            return self._conn
        self._drop()
        ep = self.endpoint
        began = time.monotonic()
        jump = self.gateways.link(ep.jump) if ep.jump is not None else None
        budget = self.timeouts.handshake
        try:
            if jump is not None:
                jump.ensure()
            for attempt in self.gateways.retrying(ep.name, "handshake"):
                with attempt, paced(jump, budget):
                    sock = jump.channel(ep.address, ep.port) if jump is not None else None
                    conn = connection(ep, self.timeouts, sock)
                    try:
                        handshake(conn, ep)
                    except BaseException:
                        if sock is not None:
                            sock.close()
                        raise
        except Refused as exc:
            raise Transient(str(exc)) from None
        except TransportError as exc:
            if exc.host == ep.name:
                raise
            # the jump host's failure, told as this host's
            raise type(exc)(ep.name, f"via {exc.message}", exc.hint) from None
        log.debug(
            "%s: connected to %s@%s:%d%s in %.2fs",
            ep.name,
            ep.user,
            ep.address,
            ep.port,
            f" via {ep.jump.name}" if ep.jump is not None else "",
            time.monotonic() - began,
        )
        self._conn = conn
        return conn

    def _drop(self) -> None:
        """Close this host's connection (its channel through the jump host too); the jump connection stays."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                shut(conn.transport)
                conn.close()
            except Exception:
                log.debug("closing %s", self.endpoint.name, exc_info=True)

    def close(self) -> None:
        self._drop()
        if self._owns_gateways:
            self.gateways.close()
            self.gateways = Gateways(self.timeouts)

    @contextmanager
    def _watchdog(self, seconds: float, what: str) -> Iterator[threading.Event]:
        """Close the connection if ``what`` overruns: unblocks any read stuck on a dead link."""
        fired = threading.Event()

        def fire() -> None:
            fired.set()
            log.warning("%s: %s exceeded %.1fs; closing the connection", self.endpoint.name, what, seconds)
            self._drop()

        timer = threading.Timer(seconds, fire)
        timer.daemon = True
        timer.start()
        try:
            yield fired
        finally:
            timer.cancel()

    def _call(self, fn: Callable[[Connection], T], *, budget: float, what: str, idempotent: bool) -> T:
        def attempt() -> T:
            with self._watchdog(budget, what) as fired:
                try:
                    return fn(self._open())
                except (Transient, TransportError):
                    raise
                except (SSHException, EOFError, OSError) as exc:
                    self._drop()
                    if fired.is_set():
                        raise TransportError(
                            self.endpoint.name,
                            f"{what} did not finish within {budget:.0f}s",
                            "the host or its link may be down or frozen",
                        ) from None
                    raise Transient(f"{type(exc).__name__}: {exc}") from None

        attempts = self.timeouts.attempts if idempotent else 1

        def before_sleep(state: RetryCallState) -> None:
            log.warning(
                "%s: %s failed (%s); retrying",
                self.endpoint.name,
                what,
                state.outcome.exception() if state.outcome else "?",
            )

        try:
            for trying in Retrying(
                stop=stop_after_attempt(max(1, attempts)),
                wait=wait_exponential(multiplier=0.3, max=2),
                retry=retry_if_exception_type(Transient),
                reraise=True,
                before_sleep=before_sleep,
            ):
                with trying:
                    return attempt()
        except Transient as exc:
            raise TransportError(
                self.endpoint.name,
                f"cannot reach {self.endpoint.address}:{self.endpoint.port}: {exc}",
                "check the host is up and reachable (jump host, sshd, network)",
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the interface ----------------------------------------------------
    def run(
        self, argv: Sequence[str], *, sudo: bool = False, timeout: float | None = None, idempotent: bool = False
    ) -> Result:
        argv = tuple(str(a) for a in argv)
        command = command_line(argv, sudo=sudo, user=self.endpoint.user)
        limit = timeout or self.timeouts.command
        budget = limit + self.timeouts.handshake

        def go(conn: Connection) -> Result:
            started = time.monotonic()
            try:
                res = conn.run(command, hide=True, warn=True, timeout=limit, in_stream=False, pty=False)
            except CommandTimedOut as exc:
                r = exc.result
                return Result(
                    self.endpoint.name, argv, -1, r.stdout, r.stderr, time.monotonic() - started, timed_out=True
                )
            except UnexpectedExit as exc:  # only with warn=False; kept for safety
                r = exc.result
                return Result(self.endpoint.name, argv, r.exited, r.stdout, r.stderr, time.monotonic() - started)
            code = res.exited if res.exited is not None else -1
            return Result(self.endpoint.name, argv, code, res.stdout, res.stderr, time.monotonic() - started)

        with self._lock:
            return self._call(go, budget=budget, what=f"`{argv[0]}`", idempotent=idempotent)

    def stream(self, argv: Sequence[str], *, sudo: bool = False) -> FabricStream:
        argv = tuple(str(a) for a in argv)
        command = command_line(argv, sudo=sudo, user=self.endpoint.user)
        budget = self.timeouts.handshake

        def go(conn: Connection) -> paramiko.Channel:
            transport = conn.client.get_transport()
            if transport is None:
                raise EOFError("no SSH transport")
            channel: paramiko.Channel = transport.open_session(timeout=self.timeouts.channel)
            channel.exec_command(command)
            return channel

        with self._lock:
            # Starting it only sends the exec request: safe to retry on a connection-level failure.
            channel = self._call(go, budget=budget, what=f"`{argv[0]}`", idempotent=True)
        return FabricStream(self.endpoint.name, self._lock, argv, channel)

    def put(self, local: Path, remote: str, *, timeout: float | None = None) -> None:
        budget = (timeout or self.timeouts.transfer) + self.timeouts.handshake

        def go(conn: Connection) -> None:
            conn.put(str(local), remote)

        with self._lock:
            self._call(go, budget=budget, what=f"upload of {local.name}", idempotent=True)


class FabricStream:
    """A command kept running on one SSH channel (paramiko's directly: invoke's runner is one-shot)."""

    def __init__(self, host: str, lock: threading.Lock, argv: tuple[str, ...], channel: paramiko.Channel) -> None:
        self._host = host
        self._lock = lock  # the transport's: one channel at a time per host
        self._argv = argv
        self._channel = channel
        self._pending = b""

    @property
    def alive(self) -> bool:
        return not self._channel.closed and not self._channel.exit_status_ready()

    def exchange(self, line: str | None, *, until: str, timeout: float) -> Result:
        host = self._host
        marker = until.encode()
        started = time.monotonic()
        deadline = started + timeout
        out = bytearray(self._pending)  # appended to in place: a long answer is not copied chunk by chunk
        self._pending = b""
        scan = 0  # where the end line may still begin: each byte is searched once, however long the answer
        with self._lock:
            try:
                if line is not None:
                    self._channel.settimeout(timeout)
                    self._channel.sendall((line + "\n").encode())
                while True:
                    end, scan = _past_line(out, marker, scan)
                    if end >= 0:
                        self._pending = bytes(out[end:])
                        return Result(
                            host,
                            self._argv,
                            0,
                            out[:end].decode("utf-8", "replace"),
                            self._stderr(),
                            time.monotonic() - started,
                        )
                    if len(out) > ANSWER_LIMIT:
                        self.close()
                        raise TransportError(
                            host,
                            f"`{self._argv[0]}` sent over {ANSWER_LIMIT >> 20} MiB without "
                            "ending its answer; the stream was closed",
                            "the agent there may be broken or replaced; check the host",
                        )
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    self._channel.settimeout(left)
                    chunk = self._channel.recv(65536)
                    if not chunk and not self._transport_alive():  # e.g. its jump host's connection closed
                        raise EOFError("the SSH connection closed")
                    if not chunk:  # the command ended without finishing this exchange
                        code = self._channel.recv_exit_status() if self._channel.exit_status_ready() else -1
                        return Result(
                            host,
                            self._argv,
                            code if code != 0 else -1,
                            out.decode("utf-8", "replace"),
                            self._stderr(),
                            time.monotonic() - started,
                        )
                    out += chunk
            except (TimeoutError, OSError) as exc:
                if not isinstance(exc, TimeoutError) and not self._transport_alive():
                    self.close()
                    raise TransportError(
                        host,
                        f"connection lost while `{self._argv[0]}` ran: {exc}",
                        "the host or its link may be down; check it with `upgrader status`",
                    ) from None
                self.close()
                return Result(
                    host,
                    self._argv,
                    -1,
                    out.decode("utf-8", "replace"),
                    self._stderr(),
                    time.monotonic() - started,
                    timed_out=True,
                )
            except (SSHException, EOFError) as exc:
                self.close()
                raise TransportError(
                    host,
                    f"connection lost while `{self._argv[0]}` ran: {exc}",
                    "the host or its link may be down; check it with `upgrader status`",
                ) from None

    def _transport_alive(self) -> bool:
        transport = self._channel.get_transport()
        return transport is not None and transport.is_active()

    def _stderr(self) -> str:
        chunks = []
        while self._channel.recv_stderr_ready():
            chunks.append(self._channel.recv_stderr(65536))
        return b"".join(chunks).decode("utf-8", "replace")

    def close(self) -> None:
        try:
            self._channel.close()
        except Exception:
            log.debug("closing a stream on %s", self._host, exc_info=True)


def _past_line(buf: bytes | bytearray, marker: bytes, start: int = 0) -> tuple[int, int]:
    """(The index just past the first complete line that starts with ``marker``, or -1; the ``start`` for
    the next call, once more has arrived).  ``start``: where the newline before such a line may be."""
    if start == 0 and buf.startswith(marker):
        at = 0
    else:
        found = buf.find(b"\n" + marker, start)
        if found < 0:  # a newline and marker may still straddle the end of what has arrived
            return -1, max(start, len(buf) - len(marker))
        at = found + 1
    newline = buf.find(b"\n", at)
    return (-1, max(0, at - 1)) if newline < 0 else (newline + 1, at)
