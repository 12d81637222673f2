"""One SSH connection, made only as upgrader allows: the Fabric ``Connection`` of a host or a jump host.

SSH settings come from the inventory only: Fabric gets an empty SSH config and no config files
(``_config``), so ``~/.ssh/config`` or ``/etc/ssh/ssh_config`` cannot add a ProxyJump (whose client
Fabric builds with AutoAddPolicy), a ProxyCommand, agent forwarding, another user, key or address.
Host keys: RejectPolicy plus the inventory's known_hosts — an unknown or changed key is refused,
never learned.  Keys and known_hosts are parsed once per process.  A failed handshake is sorted
into ``Refused`` (closed or reset before it began: worth a paced retry, see transport/gateways.py)
and ``Transient`` (worth one more try for an idempotent call).

With transport/gateways.py and transport/fabric_adapter.py, the only importers of fabric and paramiko.
"""

from __future__ import annotations

import os
import socket
from contextlib import suppress
from functools import lru_cache
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from fabric import Config, Connection
from paramiko.ssh_exception import (
    BadHostKeyException,
    ChannelException,
    NoValidConnectionsError,
    PasswordRequiredException,
    SSHException,
)

from upgrader.errors import HostKeyError, TransportError
from upgrader.transport.base import Endpoint, Timeouts

# How often an idle host connection's reader thread wakes, once authenticated (paramiko: 0.1 s, to
# notice a close).  A close wakes it anyway (a channel through a jump host) or is noticed within this;
# keepalives and rekeys are checked on each wake.  At 256 hosts the 0.1 s wakes were about a third of
# the controller's CPU in a rollback (this alone, 2 A/B rounds: 7.2 and 7.0 s against 4.7 and 4.5 s;
# with the agent and close changes of the same commit: bench/results/rollback_ab-2026-12-01-256.md).
IDLE_WAKE = 1.0


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


class Transient(Exception):
    """A connection-level failure worth one more try (for idempotent calls only)."""


class Refused(Exception):
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


def handshake(conn: Connection, endpoint: Endpoint) -> None:
    """Open ``conn``; a refused or reset handshake raises Refused, other failures Transient or HostKeyError."""
    if conn.connect_kwargs.get("sock") is None:  # not a channel through a jump host: our own TCP socket
        try:
            conn.connect_kwargs["sock"] = _tcp(endpoint, conn.connect_timeout)
        except OSError as exc:  # refused, unreachable, timed out: as paramiko's own connect reported them
            raise Transient(f"{type(exc).__name__}: {exc}") from None
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
            raise Refused(f"SSH: {exc}") from None
        raise Transient(f"SSH: {exc}") from None
    except (ConnectionResetError, ConnectionRefusedError) as exc:
        _abandon(conn)
        raise Refused(f"{type(exc).__name__}: {exc}") from None
    except (NoValidConnectionsError, TimeoutError, OSError, EOFError) as exc:
        _abandon(conn)
        raise Transient(f"{type(exc).__name__}: {exc}") from None
    transport = conn.client.get_transport()
    if transport is not None:
        transport.set_keepalive(5)
        transport.sock.settimeout(IDLE_WAKE)  # the reader thread's wait; callers' reads set their own


def shut(transport: paramiko.Transport | None) -> None:
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
    shut(transport)
    conn.client.close()
    conn.close()


def _refused(exc: SSHException) -> bool:
    """The server closed or reset the connection before or during its banner (sshd past MaxStartups does
    that), as opposed to never answering (a frozen host: its banner timeout ran out; not worth a retry)."""
    if isinstance(exc, ChannelException):
        return True
    cause = exc.__context__
    return "protocol banner" in str(exc) and isinstance(cause, (EOFError, ConnectionResetError, BrokenPipeError))
