"""The Fabric implementation of ``Transport`` — the only importer of fabric and paramiko.

Timeouts: connect/banner/auth/channel-open are Paramiko settings; the command
timeout is invoke's; and a watchdog closes the connection if any single
operation overruns its budget anyway (a cut link can stall a read with no
timeout of its own).  Host keys: RejectPolicy plus the inventory's
known_hosts — an unknown or changed key is refused, never learned.
"""

from __future__ import annotations

import logging
import shlex
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import paramiko
from cryptography.hazmat.primitives import serialization
from fabric import Connection
from invoke.exceptions import CommandTimedOut, UnexpectedExit
from paramiko.ssh_exception import BadHostKeyException, NoValidConnectionsError, SSHException
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from upgrader.errors import HostKeyError, TransportError
from upgrader.transport.base import Endpoint, Result, Timeouts

log = logging.getLogger(__name__)
T = TypeVar("T")


def command_line(argv: Sequence[str], *, sudo: bool, user: str) -> str:
    """The one place an argv becomes a shell line: every argument quoted, exactly once."""
    full = ("sudo", "-n", "--", *argv) if sudo and user != "root" else tuple(argv)
    return shlex.join(full)


def _stamp(path: str) -> tuple[str, int, int]:
    """A cache key that changes when the file does (a rotated key or a re-keyed host)."""
    st = Path(path).stat()
    return path, st.st_mtime_ns, st.st_size


@lru_cache(maxsize=64)
def _private_key(stamp: tuple[str, int, int]) -> paramiko.PKey:
    """An unencrypted private key, loaded once per process and shared by every connection that uses it.

    Paramiko loads the key file again for every connection, and for RSA keys cryptography's consistency
    check (OpenSSL 3) costs ~50 ms of CPU under the GIL each time: with 16 hosts that alone was ~0.9 s
    of an emergency rollback.  The check guards against malformed keys from untrusted sources; this is
    the operator's own key file, so it is skipped for RSA.  Other key types are cheap to load as is.
    """
    path = stamp[0]
    data = Path(path).read_bytes()
    try:
        if b"-----BEGIN OPENSSH PRIVATE KEY-----" in data:
            key = serialization.load_ssh_private_key(data, None, unsafe_skip_rsa_key_validation=True)
        else:
            key = serialization.load_pem_private_key(data, None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError):  # encrypted or an unusual format: let paramiko decide and say why
        return paramiko.PKey.from_path(path)
    from cryptography.hazmat.primitives.asymmetric import rsa

    if isinstance(key, rsa.RSAPrivateKey):
        return paramiko.RSAKey(key=key)
    return paramiko.PKey.from_path(path)


@lru_cache(maxsize=16)
def _known_hosts(stamp: tuple[str, int, int]) -> paramiko.HostKeys:
    """known_hosts parsed once per process (paramiko would parse the whole file for every connection)."""
    return paramiko.HostKeys(stamp[0])


class _Transient(Exception):
    """A connection-level failure worth one more try (for idempotent calls only)."""


class FabricTransport:
    def __init__(self, endpoint: Endpoint, timeouts: Timeouts | None = None) -> None:
        self.endpoint = endpoint
        self.timeouts = timeouts or Timeouts()
        self._conn: Connection | None = None
        self._gateway: Connection | None = None
        self._lock = threading.Lock()  # one channel at a time per host keeps ordering obvious
        self._connect_error: TransportError | None = None

    # -- connection -------------------------------------------------------
    def _connection(self, endpoint: Endpoint, gateway: Connection | None) -> Connection:
        t = self.timeouts
        connect_kwargs: dict[str, object] = {
            "look_for_keys": endpoint.ssh_key is None,
            "allow_agent": endpoint.ssh_key is None,
            "banner_timeout": t.connect,
            "auth_timeout": t.auth,
            "channel_timeout": t.channel,
        }
        if endpoint.ssh_key:
            try:
                connect_kwargs["pkey"] = _private_key(_stamp(str(Path(endpoint.ssh_key).expanduser())))
            except (OSError, SSHException) as exc:
                raise TransportError(endpoint.name, f"cannot load SSH key {endpoint.ssh_key}: {exc}",
                                     "check the inventory's ssh_key path; encrypted keys need an ssh-agent"
                                     ) from None
        conn = Connection(host=endpoint.address, user=endpoint.user, port=endpoint.port, gateway=gateway,
                          connect_timeout=max(1, int(t.connect)), connect_kwargs=connect_kwargs)
        client = conn.client
        if endpoint.strict_host_keys:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        if endpoint.known_hosts:
            try:
                known = _known_hosts(_stamp(str(Path(endpoint.known_hosts).expanduser())))
            except OSError as exc:
                raise HostKeyError(endpoint.name, f"cannot read known_hosts {endpoint.known_hosts}: {exc}",
                                   "create it (e.g. `invoke lab.inventory` for the test VMs)") from None
            # Only this host's entries go into the client: the lookup paramiko does per connection is
            # then over a handful of keys instead of the whole file.
            name = endpoint.address if endpoint.port == 22 else f"[{endpoint.address}]:{endpoint.port}"
            for keytype, key in (known.lookup(name) or {}).items():
                client.get_host_keys().add(name, keytype, key)
        return conn

    def _open(self) -> Connection:
        if self._conn is not None and self._conn.is_connected:
            return self._conn
        self.close()
        gateway = None
        if self.endpoint.jump is not None:
            gateway = self._gateway = self._connection(self.endpoint.jump, None)
        conn = self._connection(self.endpoint, gateway)
        try:
            conn.open()
        except BadHostKeyException as exc:
            raise HostKeyError(self.endpoint.name, f"host key for {exc.hostname} has CHANGED",
                               "if the host was rebuilt, verify the new key out of band and update known_hosts"
                               ) from None
        except SSHException as exc:
            if "known_hosts" in str(exc):
                raise HostKeyError(self.endpoint.name, f"host key for {self.endpoint.address} is not known",
                                   "add the host's key to the inventory's known_hosts (verified out of band)"
                                   ) from None
            raise _Transient(f"SSH: {exc}") from None
        except (NoValidConnectionsError, TimeoutError, OSError, EOFError) as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from None
        transport = conn.client.get_transport()
        if transport is not None:
            transport.set_keepalive(5)
        self._conn = conn
        return conn

    def close(self) -> None:
        for conn in (self._conn, self._gateway):
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    log.debug("closing %s", self.endpoint.name, exc_info=True)
        self._conn = self._gateway = None

    @contextmanager
    def _watchdog(self, seconds: float, what: str) -> Iterator[threading.Event]:
        """Close the connection if ``what`` overruns: unblocks any read stuck on a dead link."""
        fired = threading.Event()

        def fire() -> None:
            fired.set()
            log.warning("%s: %s exceeded %.1fs; closing the connection", self.endpoint.name, what, seconds)
            self.close()

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
                except (_Transient, TransportError):
                    raise
                except (SSHException, EOFError, OSError) as exc:
                    self.close()
                    if fired.is_set():
                        raise TransportError(self.endpoint.name, f"{what} did not finish within {budget:.0f}s",
                                             "the host or its link may be down or frozen") from None
                    raise _Transient(f"{type(exc).__name__}: {exc}") from None

        attempts = self.timeouts.attempts if idempotent else 1

        def before_sleep(state: RetryCallState) -> None:
            log.warning("%s: %s failed (%s); retrying", self.endpoint.name, what,
                        state.outcome.exception() if state.outcome else "?")

        try:
            for trying in Retrying(stop=stop_after_attempt(max(1, attempts)),
                                   wait=wait_exponential(multiplier=0.3, max=2),
                                   retry=retry_if_exception_type(_Transient), reraise=True,
                                   before_sleep=before_sleep):
                with trying:
                    return attempt()
        except _Transient as exc:
            raise TransportError(self.endpoint.name, f"cannot reach {self.endpoint.address}:"
                                 f"{self.endpoint.port}: {exc}",
                                 "check the host is up and reachable (jump host, sshd, network)") from None
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the interface ----------------------------------------------------
    def connect(self) -> None:
        budget = self.timeouts.connect * 2 + self.timeouts.auth + self.timeouts.channel
        with self._lock:
            try:
                self._call(lambda conn: None, budget=budget, what="connect", idempotent=True)
            except TransportError as exc:
                # Kept for the first real call, which raises it instead of waiting out the same
                # timeouts again (a frozen host would otherwise cost twice the connect budget).
                self._connect_error = exc

    def _raise_connect_error(self) -> None:
        exc, self._connect_error = self._connect_error, None
        if exc is not None and not (self._conn is not None and self._conn.is_connected):
            raise exc

    def run(self, argv: Sequence[str], *, sudo: bool = False, timeout: float | None = None,
            idempotent: bool = False) -> Result:
        argv = tuple(str(a) for a in argv)
        command = command_line(argv, sudo=sudo, user=self.endpoint.user)
        limit = timeout or self.timeouts.command
        budget = limit + self.timeouts.connect * 2 + self.timeouts.auth + self.timeouts.channel

        def go(conn: Connection) -> Result:
            started = time.monotonic()
            try:
                res = conn.run(command, hide=True, warn=True, timeout=limit, in_stream=False, pty=False)
            except CommandTimedOut as exc:
                r = exc.result
                return Result(self.endpoint.name, argv, -1, r.stdout, r.stderr, time.monotonic() - started,
                              timed_out=True)
            except UnexpectedExit as exc:  # only with warn=False; kept for safety
                r = exc.result
                return Result(self.endpoint.name, argv, r.exited, r.stdout, r.stderr, time.monotonic() - started)
            code = res.exited if res.exited is not None else -1
            return Result(self.endpoint.name, argv, code, res.stdout, res.stderr, time.monotonic() - started)

        with self._lock:
            self._raise_connect_error()
            return self._call(go, budget=budget, what=f"`{argv[0]}`", idempotent=idempotent)

    def stream(self, argv: Sequence[str], *, sudo: bool = False) -> FabricStream:
        argv = tuple(str(a) for a in argv)
        command = command_line(argv, sudo=sudo, user=self.endpoint.user)
        budget = self.timeouts.connect * 2 + self.timeouts.auth + self.timeouts.channel

        def go(conn: Connection) -> paramiko.Channel:
            transport = conn.client.get_transport()
            if transport is None:
                raise EOFError("no SSH transport")
            channel = transport.open_session(timeout=self.timeouts.channel)
            channel.exec_command(command)
            return channel

        with self._lock:
            self._raise_connect_error()
            # Starting it only sends the exec request: safe to retry on a connection-level failure.
            channel = self._call(go, budget=budget, what=f"`{argv[0]}`", idempotent=True)
        return FabricStream(self.endpoint.name, self._lock, argv, channel)

    def put(self, local: Path, remote: str, *, timeout: float | None = None) -> None:
        budget = (timeout or self.timeouts.transfer) + self.timeouts.connect * 2 + self.timeouts.auth

        def go(conn: Connection) -> None:
            conn.put(str(local), remote)

        with self._lock:
            self._raise_connect_error()
            self._call(go, budget=budget, what=f"upload of {local.name}", idempotent=True)

    def get(self, remote: str, local: Path, *, timeout: float | None = None) -> None:
        budget = (timeout or self.timeouts.transfer) + self.timeouts.connect * 2 + self.timeouts.auth

        def go(conn: Connection) -> None:
            conn.get(remote, str(local))

        with self._lock:
            self._raise_connect_error()
            self._call(go, budget=budget, what=f"download of {remote}", idempotent=True)


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
        out = self._pending
        self._pending = b""
        with self._lock:
            try:
                if line is not None:
                    self._channel.settimeout(timeout)
                    self._channel.sendall((line + "\n").encode())
                while True:
                    end = _past_line(out, marker)
                    if end >= 0:
                        self._pending = out[end:]
                        return Result(host, self._argv, 0, out[:end].decode("utf-8", "replace"),
                                      self._stderr(), time.monotonic() - started)
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    self._channel.settimeout(left)
                    chunk = self._channel.recv(65536)
                    if not chunk:  # the command ended without finishing this exchange
                        code = self._channel.recv_exit_status() if self._channel.exit_status_ready() else -1
                        return Result(host, self._argv, code if code != 0 else -1,
                                      out.decode("utf-8", "replace"), self._stderr(), time.monotonic() - started)
                    out += chunk
            except (TimeoutError, OSError) as exc:
                if not isinstance(exc, TimeoutError) and not self._transport_alive():
                    self.close()
                    raise TransportError(host, f"connection lost while `{self._argv[0]}` ran: {exc}",
                                         "the host or its link may be down; check it with `upgrader status`"
                                         ) from None
                self.close()
                return Result(host, self._argv, -1, out.decode("utf-8", "replace"), self._stderr(),
                              time.monotonic() - started, timed_out=True)
            except (SSHException, EOFError) as exc:
                self.close()
                raise TransportError(host, f"connection lost while `{self._argv[0]}` ran: {exc}",
                                     "the host or its link may be down; check it with `upgrader status`") from None

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


def _past_line(buf: bytes, marker: bytes) -> int:
    """The index just past the first complete line that starts with ``marker``, or -1."""
    if buf.startswith(marker):
        at = 0
    else:
        at = buf.find(b"\n" + marker)
        if at < 0:
            return -1
        at += 1
    newline = buf.find(b"\n", at)
    return -1 if newline < 0 else newline + 1
