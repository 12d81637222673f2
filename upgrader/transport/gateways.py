"""The jump-host connections of a run (``Gateways``) and the pacing of handshakes.

All hosts behind one jump host share ONE connection to it, opened on first use and closed with the
pool; each host's SSH connection runs inside a direct-tcpip channel of it.  The jump's sshd then
sees one handshake per run, not one per host (its MaxStartups 10:30:100 would drop some), and
forwarding channels are not sessions (MaxSessions does not apply).  Handshakes are paced
(HANDSHAKES_PER_JUMP, HANDSHAKES_PER_CONTROLLER) and a refused or reset one is retried with backoff
and counted (``Gateways.retries``).  A keepalive that the jump host does not answer within the
channel timeout closes its connection: every host behind it then fails at once instead of each
waiting out its own timeouts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import paramiko
from fabric import Connection
from paramiko.ssh_exception import ChannelException, SSHException
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from upgrader.errors import TransportError
from upgrader.transport.base import Endpoint, Timeouts
from upgrader.transport.ssh import Refused, Transient, connection, handshake, shut

log = logging.getLogger(__name__)

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
_controller_handshakes = threading.BoundedSemaphore(HANDSHAKES_PER_CONTROLLER)


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
            retry=retry_if_exception_type(Refused),
            reraise=True,
            before_sleep=before_sleep,
        )

    def close(self) -> None:
        with self._lock:
            links, self._links = list(self._links.values()), {}
        for link in links:
            link.close()


@contextmanager
def paced(jump: _JumpLink | None, timeout: float) -> Iterator[None]:
    """Hold a handshake slot of the controller (and of the jump host) while a handshake is in flight."""
    held: list[threading.BoundedSemaphore] = []
    try:
        for slots in (_controller_handshakes, *((jump.slots,) if jump else ())):
            if not slots.acquire(timeout=timeout):
                raise Transient(f"no handshake slot within {timeout:.0f}s (too many hosts connecting at once)")
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
        """A direct-tcpip channel to ``address:port`` from the jump host; Refused if it could not connect."""
        transport = self._transport()
        try:
            return transport.open_channel(
                "direct-tcpip", (address, port), ("127.0.0.1", 0), timeout=self._gateways.timeouts.channel
            )
        except ChannelException as exc:  # the jump host's connect() failed: host down, sshd stopped
            raise Refused(f"jump host {self.endpoint.name} could not connect to {address}:{port}: {exc.text}") from None
        except (SSHException, EOFError, OSError) as exc:  # the jump connection itself failed
            self._drop(transport, f"{type(exc).__name__}: {exc}")
            raise Transient(f"jump host {self.endpoint.name}: {type(exc).__name__}: {exc}") from None

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
                    handshake(conn, ep)
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
        except (Refused, Transient) as exc:
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
            shut(transport)
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
                shut(conn.transport)
                conn.close()
            except Exception:
                log.debug("closing the connection to %s", self.endpoint.name, exc_info=True)
