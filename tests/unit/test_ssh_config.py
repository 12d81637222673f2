"""SSH settings from elsewhere never weaken checks (issue 13 §6), and handshakes are paced and retried.

~/.ssh/config, /etc/ssh/ssh_config and Fabric's config files are ignored: the transport's Connection is
built from the inventory's endpoint only.  The hostile config below names the loopback addresses the
tests connect to, so a setting that leaked through would show (a marker file, a connection to the
wrong listener, agent forwarding on).  Only loopback is ever contacted.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import fabric.config
import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from upgrader.errors import HostKeyError, TransportError
from upgrader.transport import fabric_adapter, ssh
from upgrader.transport import gateways as jumps
from upgrader.transport.base import Endpoint, Timeouts

FAST = Timeouts(connect=1.0, auth=1.0, channel=1.0, command=2.0, transfer=2.0, attempts=1)


class Listener:
    """A TCP server on 127.0.0.1 that accepts, holds each connection ``hold`` seconds without a word,
    and closes it.  It counts connections, and the most it held at once."""

    def __init__(self, hold: float = 0.0) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.hold = hold
        self.accepted = 0
        self.open = 0
        self.most = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.sock.settimeout(0.1)  # here, not in _serve: a test may close the listener before _serve runs
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self.open += 1
                self.most = max(self.most, self.open)
            threading.Thread(target=self._drop, args=(conn,), daemon=True).start()

    def _drop(self, conn: socket.socket) -> None:
        time.sleep(self.hold)
        with self._lock:
            self.open -= 1
        conn.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def decoy() -> Iterator[Listener]:
    """Where a leaked ProxyJump or HostName would lead: it must never see a connection."""
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def hostile_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, decoy: Listener) -> Path:
    """HOME with a ~/.ssh/config and ~/.fabric.yaml that would redirect, proxy and forward everything."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    marker = tmp_path / "proxycommand-ran"
    (home / ".ssh" / "config").write_text(
        "Host 127.0.0.1 10.77.* *\n"
        f"  ProxyCommand sh -c 'touch {marker}; exec cat'\n"
        f"  ProxyJump evil@127.0.0.1:{decoy.port}\n"
        "  ForwardAgent yes\n"
        "  User evil\n"
        f"  IdentityFile {home}/.ssh/evil_key\n"
        "  ConnectTimeout 600\n"
        "  StrictHostKeyChecking no\n"
    )
    (home / ".fabric.yaml").write_text(
        f"forward_agent: true\ngateway: 'sh -c \"touch {marker}\"'\nuser: evil\nconnect_kwargs: {{allow_agent: true}}\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return marker


def endpoint(
    port: int,
    *,
    name: str = "ny5-1",
    jump: Endpoint | None = None,
    key: str | None = None,
    known_hosts: str | None = None,
) -> Endpoint:
    return Endpoint(
        name=name, address="127.0.0.1", port=port, user="deploy", ssh_key=key, known_hosts=known_hosts, jump=jump
    )


def test_the_connection_takes_nothing_from_ssh_config_or_fabric_files(hostile_home: Path) -> None:
    conn = ssh.connection(endpoint(2222), FAST)
    assert dict(conn.ssh_config) == {"hostname": "127.0.0.1"}  # what an empty config gives
    assert (conn.host, conn.port, conn.user) == ("127.0.0.1", 2222, "deploy")
    assert conn.gateway is False and conn.forward_agent is False
    assert "key_filename" not in conn.connect_kwargs
    assert conn.connect_timeout == 1
    assert isinstance(conn.client._policy, paramiko.RejectPolicy)
    assert conn.config.load_ssh_configs is False and conn.config.forward_agent is False
    assert conn.config.user != "evil"


def test_no_ssh_config_file_is_even_read(monkeypatch: pytest.MonkeyPatch, hostile_home: Path) -> None:
    """Neither ~/.ssh/config nor /etc/ssh/ssh_config: Fabric's one loader of both is never called."""

    def refuse(self: object, path: str) -> None:
        raise AssertionError(f"Fabric read {path}")

    monkeypatch.setattr(fabric.config.Config, "_load_ssh_file", refuse)
    conn = ssh.connection(endpoint(2222), FAST)
    assert dict(conn.ssh_config) == {"hostname": "127.0.0.1"}  # what an empty config gives


def test_a_real_connect_ignores_proxycommand_and_proxyjump(
    hostile_home: Path, listener: Listener, decoy: Listener
) -> None:
    transport = fabric_adapter.FabricTransport(endpoint(listener.port), FAST)
    with pytest.raises(TransportError) as caught:
        transport.run(["true"])
    transport.close()
    assert "\n" not in str(caught.value)
    assert listener.accepted >= 1, "the transport went to the inventory's address itself"
    assert decoy.accepted == 0, "no ProxyJump from ~/.ssh/config"
    assert not hostile_home.exists(), "no ProxyCommand from ~/.ssh/config or ~/.fabric.yaml"


def test_the_jump_hop_is_strict_and_ignores_ssh_config_too(
    hostile_home: Path, listener: Listener, decoy: Listener, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    jump = Endpoint(name="ny5-jump", address="127.0.0.1", port=listener.port, user="jumper", known_hosts=str(known))
    conn = ssh.connection(jump, FAST)
    assert isinstance(conn.client._policy, paramiko.RejectPolicy)
    assert conn.gateway is False and conn.forward_agent is False
    assert dict(conn.ssh_config) == {"hostname": "127.0.0.1"}  # what an empty config gives
    transport = fabric_adapter.FabricTransport(endpoint(9, jump=jump, known_hosts=str(known)), FAST)
    with pytest.raises(TransportError) as caught:
        transport.run(["true"])
    transport.close()
    assert str(caught.value).startswith("ny5-1: via ny5-jump: cannot reach jump host 127.0.0.1:"), caught.value
    assert listener.accepted >= 1 and decoy.accepted == 0 and not hostile_home.exists()


def test_a_refused_handshake_is_retried_with_backoff_and_counted(listener: Listener) -> None:
    """The listener closes at once, as sshd past MaxStartups does: retried, counted, then reported."""
    gateways = jumps.Gateways(FAST)
    transport = fabric_adapter.FabricTransport(endpoint(listener.port), FAST, gateways)
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"cannot reach 127\.0\.0\.1"):
        transport.run(["true"])
    took = time.monotonic() - started
    transport.close()
    assert 2 <= listener.accepted <= jumps.HANDSHAKE_ATTEMPTS
    assert gateways.retries == listener.accepted - 1
    assert took < FAST.connect * 2 + 3  # bounded by stop_after_delay, not attempts x timeouts


def test_a_silent_host_is_not_retried(tmp_path: Path) -> None:
    """A banner that never comes (a frozen host) is a timeout, not a refusal: one attempt only."""
    server = Listener(hold=5)
    try:
        gateways = jumps.Gateways(FAST)
        transport = fabric_adapter.FabricTransport(endpoint(server.port), FAST, gateways)
        with pytest.raises(TransportError):
            transport.run(["true"])
        transport.close()
        assert server.accepted == 1 and gateways.retries == 0
    finally:
        server.close()


def _connections_to(port: int) -> set[str]:
    """This process's open TCP sockets connected to 127.0.0.1:``port`` (the client side; not the listener's)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == port:
            inodes.add(f"socket:[{fields[9]}]")
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            mine.add(os.readlink(f"/proc/self/fd/{fd}"))
    return inodes & mine


@pytest.mark.parametrize("hold", [0.0, 5.0], ids=["closed at once", "silent"])
def test_a_failed_handshake_leaves_no_socket_open(hold: float) -> None:
    """Whether the peer closes at once (retried) or never sends a banner (timed out), every socket the
    handshakes opened is closed when they give up, not left for the process's exit."""
    server = Listener(hold=hold)
    try:
        transport = fabric_adapter.FabricTransport(endpoint(server.port), FAST, jumps.Gateways(FAST))
        with pytest.raises(TransportError):
            transport.run(["true"])
        assert server.accepted >= 1
        deadline = time.monotonic() + 2  # paramiko's reader thread lets go of its socket on its next wake
        while (left := _connections_to(server.port)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert left == set()
        transport.close()
    finally:
        server.close()


def test_handshakes_in_flight_are_bounded_per_controller() -> None:
    server = Listener(hold=0.3)
    try:
        gateways = jumps.Gateways(FAST)
        count = jumps.HANDSHAKES_PER_CONTROLLER + 8
        transports = [
            fabric_adapter.FabricTransport(endpoint(server.port, name=f"h{i}"), FAST, gateways) for i in range(count)
        ]
        errors: list[BaseException] = []

        def connect(transport: fabric_adapter.FabricTransport) -> None:
            try:
                transport.run(["true"])
            except TransportError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=connect, args=(t,)) for t in transports]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(errors) == count and server.accepted >= count
        assert server.most <= jumps.HANDSHAKES_PER_CONTROLLER, server.most
    finally:
        server.close()


def _write_key(path: Path, kind: str, password: bytes | None) -> Path:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    if kind == "ed25519-openssh":
        data = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption
        )
    else:  # rsa-pem: the traditional "BEGIN RSA PRIVATE KEY" with Proc-Type: ENCRYPTED
        data = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, encryption
        )
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("kind", ["ed25519-openssh", "rsa-pem"])
def test_a_passphrase_protected_key_without_an_agent_is_a_clear_error(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch, listener: Listener
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    key = _write_key(tmp_path / "id", kind, b"correct horse")
    transport = fabric_adapter.FabricTransport(endpoint(listener.port, key=str(key)), FAST)
    with pytest.raises(TransportError) as caught:
        transport.run(["true"])
    transport.close()
    message = str(caught.value)
    assert "\n" not in message and "passphrase-protected" in message and "no ssh-agent" in message
    assert f"ssh-add {key}" in caught.value.hint
    assert listener.accepted == 0, "refused before connecting"


def test_a_passphrase_protected_key_with_an_agent_uses_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent.sock"))
    key = _write_key(tmp_path / "id", "ed25519-openssh", b"correct horse")
    conn = ssh.connection(endpoint(2222, key=str(key)), FAST)
    assert conn.connect_kwargs["allow_agent"] is True and "pkey" not in conn.connect_kwargs
    assert conn.forward_agent is False  # using the agent to log in is not forwarding it


def test_an_unencrypted_key_is_loaded(tmp_path: Path) -> None:
    key = _write_key(tmp_path / "id", "ed25519-openssh", None)
    conn = ssh.connection(endpoint(2222, key=str(key)), FAST)
    assert isinstance(conn.connect_kwargs["pkey"], paramiko.PKey) and conn.connect_kwargs["allow_agent"] is False


def test_an_unknown_known_hosts_file_is_a_host_key_error(tmp_path: Path) -> None:
    with pytest.raises(HostKeyError, match="cannot read known_hosts"):
        ssh.connection(endpoint(2222, known_hosts=str(tmp_path / "absent")), FAST)


def test_the_controllers_tcp_connections_have_nagle_off(listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every TCP socket a handshake gets (a host's or a jump host's; not a channel) has TCP_NODELAY:
    with Nagle on, each small SSH packet behind an unacknowledged one waits for a delayed ACK."""
    seen: list[int] = []
    real = ssh._tcp

    def tcp(ep: Endpoint, timeout: float) -> socket.socket:
        sock = real(ep, timeout)
        seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return sock

    monkeypatch.setattr(ssh, "_tcp", tcp)
    transport = fabric_adapter.FabricTransport(endpoint(listener.port), FAST)
    with pytest.raises(TransportError):
        transport.run(["true"])  # the listener is no sshd: the handshake fails after the TCP connect
    transport.close()
    assert seen and set(seen) == {1}
    assert listener.accepted == len(seen)
    unused = socket.socket()
    unused.bind(("127.0.0.1", 0))
    port = unused.getsockname()[1]
    unused.close()  # bound, never listening: a connect to it is refused
    with pytest.raises(ConnectionRefusedError):  # an OSError: the handshake reports it as before
        real(endpoint(port), 2)
