"""The Fabric implementation of ``Transport`` — the only importer of fabric and paramiko.

Timeouts: connect/banner/auth/channel-open are Paramiko settings; the command
timeout is invoke's; and a watchdog closes the connection if any single
operation overruns its budget anyway (a cut link can stall a read with no
timeout of its own).  Host keys: RejectPolicy plus the inventory's
known_hosts — an unknown or changed key is refused, never learned, on the
jump hop as on the target.

SSH settings come from the inventory only: Fabric gets an empty SSH config and
no config files (``_config``), so ``~/.ssh/config`` or ``/etc/ssh/ssh_config``
cannot add a ProxyJump (whose client Fabric builds with AutoAddPolicy), a
ProxyCommand, agent forwarding, another user, key or address.

Jump hosts (``Gateways``): all hosts behind one jump host share ONE connection
to it, opened on first use and closed with the pool; each host's SSH connection
runs inside a direct-tcpip channel of it.  The jump's sshd then sees one
handshake per run, not one per host (its MaxStartups 10:30:100 would drop
some), and forwarding channels are not sessions (MaxSessions does not apply).
Handshakes are paced (HANDSHAKES_PER_JUMP, HANDSHAKES_PER_CONTROLLER) and a
refused or reset one is retried with backoff and counted (``Gateways.retries``).
A keepalive that the jump host does not answer within the channel timeout
closes its connection: every host behind it then fails at once instead of each
waiting out its own timeouts.
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import paramiko
from cryptography.hazmat.primitives import serialization
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut, UnexpectedExit
from paramiko.ssh_exception import (
    BadHostKeyException,
    ChannelException,
    NoValidConnectionsError,
    PasswordRequiredException,
    SSHException,
)
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random_exponential,
)

from upgrader.errors import HostKeyError, TransportError
from upgrader.transport.base import Endpoint, Result, Timeouts

log = logging.getLogger(__name__)
T = TypeVar("T")

# Handshakes (channel open + SSH key exchange + auth) in flight at once.  Per jump host: below sshd's
# MaxStartups 10, where it starts dropping new connections; with direct-tcpip channels the jump's sshd
# sees none of them as startups, but it does the connect() for each and the targets' sshd see them.
# Per controller: every target's sshd and this machine's cores do the crypto of each handshake.
HANDSHAKES_PER_JUMP = 8
HANDSHAKES_PER_CONTROLLER = 16
# A refused or reset handshake (sshd past MaxStartups closes the socket before its banner; a jump host
# answers a direct-tcpip open with "connect failed") is tried again, this many times in all, with
# randomised exponential backoff (0.2 s doubling, at most 2 s), within twice the connect timeout.
HANDSHAKE_ATTEMPTS = 4
# Seconds between keepalives to a jump host; one not answered within the channel timeout marks it dead.
JUMP_KEEPALIVE = 2.0
# How often an idle host connection's reader thread wakes, once authenticated (paramiko: 0.1 s, to
# notice a close).  A close wakes it anyway (a channel through a jump host) or is noticed within this;
# keepalives and rekeys are checked on each wake.  At 256 hosts the 0.1 s wakes were about a third of
# the controller's CPU in a rollback (this alone, 2 A/B rounds: 7.2 and 7.0 s against 4.7 and 4.5 s;
# with the agent and close changes of the same commit: bench/results/rollback_ab-2026-12-01-256.md).
IDLE_WAKE = 1.0
# Bytes one exchange takes from a host before it gives up on it.  The agent's answers are kilobytes
# (each command's output it keeps is at most 1 MiB); a host that streams without end (a broken or
# replaced agent) would otherwise grow the controller, 256 hosts at once, until the timeout.
ANSWER_LIMIT = 64 << 20

_controller_handshakes = threading.BoundedSemaphore(HANDSHAKES_PER_CONTROLLER)


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
    key: object
    try:
        if b"-----BEGIN OPENSSH PRIVATE KEY-----" in data:
            key = serialization.load_ssh_private_key(data, None, unsafe_skip_rsa_key_validation=True)
        else:
            key = serialization.load_pem_private_key(data, None, unsafe_skip_rsa_key_validation=True)
    except TypeError as exc:  # cryptography: "Key is password-protected" / "private key is encrypted"
        raise PasswordRequiredException(str(exc)) from None
    except ValueError:  # an unusual format: let paramiko decide and say why
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


class _Refused(Exception):
    """A handshake refused or reset before it began: retried with backoff (see HANDSHAKE_ATTEMPTS)."""


def _config() -> Config:
    """Fabric settings with nothing from this machine's files: no ssh_config (user or system), no Fabric
    or Invoke config file, no agent forwarding, no gateway.  (``lazy`` skips the config files; an explicit,
    empty SSHConfig means Fabric never reads ~/.ssh/config or /etc/ssh/ssh_config.)"""
    return Config(
        lazy=True,
        ssh_config=paramiko.SSHConfig(),
        overrides={"load_ssh_configs": False, "forward_agent": False, "gateway": None},
    )


def _key_kwargs(endpoint: Endpoint) -> dict[str, object]:
    """How to authenticate: the inventory's key, or (no key given) the agent and ~/.ssh/id_* like ssh."""
    if not endpoint.ssh_key:
        return {"look_for_keys": True, "allow_agent": True}
    path = str(Path(endpoint.ssh_key).expanduser())
    try:
        return {"look_for_keys": False, "allow_agent": False, "pkey": _private_key(_stamp(path))}
    except PasswordRequiredException:
        if os.environ.get("SSH_AUTH_SOCK"):
            return {"look_for_keys": False, "allow_agent": True}  # upgrader never asks for a passphrase
        raise TransportError(
            endpoint.name,
            f"SSH key {endpoint.ssh_key} is passphrase-protected and no ssh-agent is running",
            f"start ssh-agent and `ssh-add {endpoint.ssh_key}`, or use an unencrypted deploy key",
        ) from None
    except (OSError, SSHException, ValueError) as exc:
        raise TransportError(
            endpoint.name,
            f"cannot load SSH key {endpoint.ssh_key}: {exc}",
            "check the inventory's ssh_key path and that the file is a private key",
        ) from None


def connection(endpoint: Endpoint, timeouts: Timeouts, sock: object | None = None) -> Connection:
    """A Fabric Connection to ``endpoint`` (no I/O): strict host keys, settings from the inventory only.

    ``sock`` is a direct-tcpip channel through the datacenter's jump host, if it has one.
    """
    t = timeouts
    connect_kwargs: dict[str, object] = {
        **_key_kwargs(endpoint),
        "banner_timeout": t.connect,
        "auth_timeout": t.auth,
        "channel_timeout": t.channel,
    }
    if sock is not None:
        connect_kwargs["sock"] = sock
    conn = Connection(
        host=endpoint.address,
        user=endpoint.user,
        port=endpoint.port,
        config=_config(),
        gateway=False,
        forward_agent=False,
        connect_timeout=max(1, int(t.connect)),
        connect_kwargs=connect_kwargs,
    )
    client = conn.client
    if endpoint.strict_host_keys:
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
    if endpoint.known_hosts:
        try:
            known = _known_hosts(_stamp(str(Path(endpoint.known_hosts).expanduser())))
        except OSError as exc:
            raise HostKeyError(
                endpoint.name,
                f"cannot read known_hosts {endpoint.known_hosts}: {exc}",
                "create it (e.g. `invoke lab.inventory` for the test VMs)",
            ) from None
        # Only this host's entries go into the client: the lookup paramiko does per connection is
        # then over a handful of keys instead of the whole file.
        name = endpoint.address if endpoint.port == 22 else f"[{endpoint.address}]:{endpoint.port}"
        for keytype, key in (known.lookup(name) or {}).items():
            client.get_host_keys().add(name, keytype, key)
    return conn


def _tcp(endpoint: Endpoint, timeout: float) -> socket.socket:
    """A TCP connection to ``endpoint`` with Nagle's algorithm off.

    SSH is many small packets that each wait for an answer (key exchange, auth, channel requests,
    every agent program).  With Nagle on, a small write behind one not yet acknowledged waits for the
    peer's delayed ACK, 40 ms on Linux: through a jump host an agent start took 166 ms with it and
    105 ms without (idle lab host, median of 10).  OpenSSH turns it off too; paramiko leaves it on.
    A host behind a jump host rides the jump's socket, so this one setting covers all of them.
    """
    sock = socket.create_connection((endpoint.address, endpoint.port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        sock.close()
        raise
    return sock


def _handshake(conn: Connection, endpoint: Endpoint) -> None:
    """Open ``conn``; a refused or reset handshake raises _Refused, other failures _Transient or HostKeyError."""
    if conn.connect_kwargs.get("sock") is None:  # not a channel through a jump host: our own TCP socket
        try:
            conn.connect_kwargs["sock"] = _tcp(endpoint, conn.connect_timeout)
        except OSError as exc:  # refused, unreachable, timed out: as paramiko's own connect reported them
            raise _Transient(f"{type(exc).__name__}: {exc}") from None
    try:
        conn.open()
    except BadHostKeyException as exc:
        _abandon(conn)
        raise HostKeyError(
            endpoint.name,
            f"host key for {exc.hostname} has CHANGED",
            "if the host was rebuilt, verify the new key out of band and update known_hosts",
        ) from None
    except SSHException as exc:
        _abandon(conn)
        if "known_hosts" in str(exc):
            raise HostKeyError(
                endpoint.name,
                f"host key for {endpoint.address} is not known",
                "add the host's key to the inventory's known_hosts (verified out of band)",
            ) from None
        if _refused(exc):
            raise _Refused(f"SSH: {exc}") from None
        raise _Transient(f"SSH: {exc}") from None
    except (ConnectionResetError, ConnectionRefusedError) as exc:
        _abandon(conn)
        raise _Refused(f"{type(exc).__name__}: {exc}") from None
    except (NoValidConnectionsError, TimeoutError, OSError, EOFError) as exc:
        _abandon(conn)
        raise _Transient(f"{type(exc).__name__}: {exc}") from None
    transport = conn.client.get_transport()
    if transport is not None:
        transport.set_keepalive(5)
        transport.sock.settimeout(IDLE_WAKE)  # the reader thread's wait; callers' reads set their own


def _shut(transport: paramiko.Transport | None) -> None:
    """Shut down the TCP socket under ``transport``, if it is one (not a channel through a jump host).

    paramiko's reader thread may be blocked reading it for up to IDLE_WAKE, and the kernel ends the
    TCP connection only once that read returns; shut down, the read returns at once and the peer sees
    the connection end now, not up to a second later.
    """
    sock = getattr(transport, "sock", None)
    if isinstance(sock, socket.socket):
        with suppress(OSError):  # not connected any more
            sock.shutdown(socket.SHUT_RDWR)


def _abandon(conn: Connection) -> None:
    """Close a connection whose handshake failed.  Fabric's close does nothing until its open has
    returned, and paramiko keeps the transport of a rejected host key running: close that too."""
    transport = conn.client.get_transport()
    _shut(transport)
    conn.client.close()
    conn.close()


def _refused(exc: SSHException) -> bool:
    """The server closed or reset the connection before or during its banner (sshd past MaxStartups does
    that), as opposed to never answering (a frozen host: its banner timeout ran out; not worth a retry)."""
    if isinstance(exc, ChannelException):
        return True
    cause = exc.__context__
    return "protocol banner" in str(exc) and isinstance(cause, (EOFError, ConnectionResetError, BrokenPipeError))


class Gateways:
    """The jump-host connections of one run (one per jump host) and its handshake pacing and counts.

    Thread-safe; constructing it does no I/O.  Shared by every FabricTransport of a pool (and of the
    early connections a pool adopts); ``close`` ends the jump connections.
    """

    def __init__(self, timeouts: Timeouts | None = None) -> None:
        self.timeouts = timeouts or Timeouts()
        self._links: dict[Endpoint, _JumpLink] = {}
        self._lock = threading.Lock()
        self.retries = 0  # handshakes refused or reset and tried again
        self.jump_connections = 0  # connections opened to jump hosts (1 per jump host when all goes well)

    def link(self, jump: Endpoint) -> _JumpLink:
        with self._lock:
            if jump not in self._links:
                self._links[jump] = _JumpLink(jump, self)
            return self._links[jump]

    def count(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def retrying(self, host: str, what: str) -> Retrying:
        """Backoff for a refused or reset handshake; each retry is counted."""

        def before_sleep(state: RetryCallState) -> None:
            self.count("retries")
            log.warning(
                "%s: %s refused (%s); retrying", host, what, state.outcome.exception() if state.outcome else "?"
            )

        return Retrying(
            stop=stop_after_attempt(HANDSHAKE_ATTEMPTS) | stop_after_delay(self.timeouts.connect * 2),
            wait=wait_random_exponential(multiplier=0.2, max=2),
            retry=retry_if_exception_type(_Refused),
            reraise=True,
            before_sleep=before_sleep,
        )

    def close(self) -> None:
        with self._lock:
            links, self._links = list(self._links.values()), {}
        for link in links:
            link.close()


@contextmanager
def _paced(jump: _JumpLink | None, timeout: float) -> Iterator[None]:
    """Hold a handshake slot of the controller (and of the jump host) while a handshake is in flight."""
    held: list[threading.BoundedSemaphore] = []
    try:
        for slots in (_controller_handshakes, *((jump.slots,) if jump else ())):
            if not slots.acquire(timeout=timeout):
                raise _Transient(f"no handshake slot within {timeout:.0f}s (too many hosts connecting at once)")
            held.append(slots)
        yield
    finally:
        for slots in reversed(held):
            slots.release()


class _JumpLink:
    """One connection to a jump host, shared by every host behind it; reopened only after it failed."""

    def __init__(self, endpoint: Endpoint, gateways: Gateways) -> None:
        self.endpoint = endpoint
        self._gateways = gateways
        self.slots = threading.BoundedSemaphore(HANDSHAKES_PER_JUMP)
        self._lock = threading.Lock()  # one (re)connect at a time; the others wait for its outcome
        self._conn: Connection | None = None
        self._failure: tuple[float, TransportError] | None = None
        self._closed = threading.Event()

    def channel(self, address: str, port: int) -> paramiko.Channel:
        """A direct-tcpip channel to ``address:port`` from the jump host; _Refused if it could not connect."""
        transport = self._transport()
        try:
            return transport.open_channel(
                "direct-tcpip", (address, port), ("127.0.0.1", 0), timeout=self._gateways.timeouts.channel
            )
        except ChannelException as exc:  # the jump host's connect() failed: host down, sshd stopped
            raise _Refused(
                f"jump host {self.endpoint.name} could not connect to {address}:{port}: {exc.text}"
            ) from None
        except (SSHException, EOFError, OSError) as exc:  # the jump connection itself failed
            self._drop(transport, f"{type(exc).__name__}: {exc}")
            raise _Transient(f"jump host {self.endpoint.name}: {type(exc).__name__}: {exc}") from None

    def ensure(self) -> None:
        """Connect to the jump host unless connected (before a host takes a handshake slot)."""
        self._transport()

    def _transport(self) -> paramiko.Transport:
        with self._lock:
            if self._conn is not None and self._conn.transport is not None and self._conn.transport.is_active():
                active: paramiko.Transport = self._conn.transport
                return active
            if self._closed.is_set():
                raise TransportError(self.endpoint.name, "the run's jump connection is closed")
            if self._failure is not None and time.monotonic() - self._failure[0] < self._gateways.timeouts.connect:
                raise self._failure[1]  # it failed just now: every host behind it hears so at once
            self._failure = None
            try:
                conn = self._open()
            except TransportError as exc:
                self._failure = (time.monotonic(), exc)
                raise
            self._conn = conn
            transport: paramiko.Transport = conn.transport
            threading.Thread(
                target=self._watch, args=(transport,), name=f"keepalive-{self.endpoint.name}", daemon=True
            ).start()
            return transport

    def _open(self) -> Connection:
        ep = self.endpoint
        try:
            # Not paced: one handshake per jump host, and a host waiting for it already holds a slot.
            for attempt in self._gateways.retrying(ep.name, "jump host handshake"):
                with attempt:
                    began = time.monotonic()
                    conn = connection(ep, self._gateways.timeouts)
                    _handshake(conn, ep)
                    self._gateways.count("jump_connections")
                    log.debug(
                        "jump host %s: connected to %s@%s:%d in %.2fs",
                        ep.name,
                        ep.user,
                        ep.address,
                        ep.port,
                        time.monotonic() - began,
                    )
                    return conn
        except (_Refused, _Transient) as exc:
            raise TransportError(
                ep.name,
                f"cannot reach jump host {ep.address}:{ep.port}: {exc}",
                "check the jump host is up and reachable, and its sshd",
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _watch(self, transport: paramiko.Transport) -> None:
        """Ask the jump host for an answer every JUMP_KEEPALIVE s; close the connection if none comes.

        Paramiko's own keepalive expects no reply, so a dead jump host (powered off, link cut) would
        only show when TCP gives up, many minutes later.  Closing the connection closes every host's
        channel in it: their calls fail now, within the timeouts.
        """
        limit = self._gateways.timeouts.channel
        while not self._closed.wait(JUMP_KEEPALIVE) and transport.is_active():
            answered = threading.Event()

            def ask(answered: threading.Event = answered) -> None:
                try:
                    transport.global_request("keepalive@openssh.com", wait=True)
                except Exception:  # the transport went: is_active() says so below
                    log.debug("keepalive to %s", self.endpoint.name, exc_info=True)
                answered.set()

            threading.Thread(target=ask, name=f"keepalive-ask-{self.endpoint.name}", daemon=True).start()
            if not answered.wait(limit) and not self._closed.is_set():
                log.warning(
                    "jump host %s did not answer a keepalive within %.0fs; closing its connection",
                    self.endpoint.name,
                    limit,
                )
                self._drop(transport, f"no answer to a keepalive within {limit:.0f}s")
                return

    def _drop(self, transport: paramiko.Transport, why: str) -> None:
        error = TransportError(
            self.endpoint.name,
            f"jump host {self.endpoint.address}:{self.endpoint.port} lost: {why}",
            "check the jump host is up and reachable; every host behind it is unreachable until it is back",
        )
        with self._lock:
            if self._conn is not None and self._conn.transport is transport:
                self._failure = (time.monotonic(), error)
                conn, self._conn = self._conn, None
            else:
                conn = None
        try:
            _shut(transport)
            transport.close()
            if conn is not None:
                conn.close()
        except Exception:
            log.debug("closing the connection to %s", self.endpoint.name, exc_info=True)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                _shut(conn.transport)
                conn.close()
            except Exception:
                log.debug("closing the connection to %s", self.endpoint.name, exc_info=True)


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
                with attempt, _paced(jump, budget):
                    sock = jump.channel(ep.address, ep.port) if jump is not None else None
                    conn = connection(ep, self.timeouts, sock)
                    try:
                        _handshake(conn, ep)
                    except BaseException:
                        if sock is not None:
                            sock.close()
                        raise
        except _Refused as exc:
            raise _Transient(str(exc)) from None
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
                _shut(conn.transport)
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
                except (_Transient, TransportError):
                    raise
                except (SSHException, EOFError, OSError) as exc:
                    self._drop()
                    if fired.is_set():
                        raise TransportError(
                            self.endpoint.name,
                            f"{what} did not finish within {budget:.0f}s",
                            "the host or its link may be down or frozen",
                        ) from None
                    raise _Transient(f"{type(exc).__name__}: {exc}") from None

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
                retry=retry_if_exception_type(_Transient),
                reraise=True,
                before_sleep=before_sleep,
            ):
                with trying:
                    return attempt()
        except _Transient as exc:
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
