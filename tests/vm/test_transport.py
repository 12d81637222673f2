"""The transport seam on a real host: argv in, exit code and output out, quoted once; timeouts; files."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from lab import config
from upgrader import agent
from upgrader.engine import remote
from upgrader.engine.endpoints import endpoints
from upgrader.engine.pool import Pool
from upgrader.errors import HostKeyError, TransportError
from upgrader.loading.inputs import load_inventory
from upgrader.transport import fabric_adapter, ssh
from upgrader.transport.base import Timeouts
from upgrader.transport.fabric_adapter import FabricTransport


def on(pool: Pool, name: str) -> FabricTransport:
    """The pool's transport to ``name``: a FabricTransport, whose run() the engine does not use but these tests do."""
    return cast(FabricTransport, pool[name])


@pytest.fixture
def host(vm_inventory: Path, vm_hosts: list[str]) -> Iterator[FabricTransport]:
    inv = load_inventory(vm_inventory)
    pool = Pool(endpoints(inv.model, inv.path), timeouts=Timeouts.for_options(3.0, None))
    try:
        yield on(pool, vm_hosts[0])
    finally:
        pool.close()


def test_run_returns_exit_code_and_both_streams(host: FabricTransport) -> None:
    res = host.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (res.exit_code, res.stdout, res.stderr, res.timed_out) == (3, "out\n", "err\n", False)
    assert not res.ok


def test_arguments_reach_the_host_literally(host: FabricTransport) -> None:
    hostile = ["$(touch /tmp/pwned)", "; reboot", "a b\tc", "'\"", "*", "--", "\\n"]
    res = host.run(["printf", "%s\\n", *hostile])
    assert res.ok and res.stdout.splitlines() == hostile
    assert host.run(["test", "-e", "/tmp/pwned"]).exit_code == 1


def test_sudo_runs_as_root(host: FabricTransport) -> None:
    assert host.run(["id", "-u"], sudo=True).stdout.strip() == "0"


def test_a_command_that_overruns_is_a_timed_out_result_within_its_timeout(host: FabricTransport) -> None:
    started = time.monotonic()
    res = host.run(["sleep", "30"], timeout=1)
    assert res.timed_out and not res.ok
    assert time.monotonic() - started < 10


def test_put_uploads_a_file_byte_for_byte(host: FabricTransport, tmp_path: Path) -> None:
    """The engine only uploads (artifacts); the host's own sha256sum says what arrived."""
    src = tmp_path / "payload.bin"
    src.write_bytes(bytes(range(256)) * 512)
    remote = f"/tmp/upgrader-transport-{time.monotonic_ns()}.bin"
    host.put(src, remote)
    try:
        there = host.run(["sha256sum", remote])
        assert there.ok and there.stdout.split()[0] == hashlib.sha256(src.read_bytes()).hexdigest()
    finally:
        host.run(["rm", "-f", remote])


def test_a_stream_answers_line_by_line_until_it_ends(host: FabricTransport) -> None:
    stream = host.stream(["sh", "-c", 'while read -r line; do echo "got $line"; echo END $?; done'])
    try:
        for word in ("one", "two words"):
            res = stream.exchange(word, until="END ", timeout=5)
            assert res.ok and res.stdout == f"got {word}\nEND 0\n"
        assert stream.exchange(None, until="END ", timeout=0.5).timed_out, "no line sent: nothing comes back"
        assert not stream.alive, "a timed-out stream is closed, never reused"
    finally:
        stream.close()


def test_a_host_that_answers_without_end_is_cut_off_at_the_limit(
    host: FabricTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken or replaced agent streaming forever must not grow the controller until the timeout:
    past ANSWER_LIMIT the exchange fails as a lost host (its outcome unknown) and the stream is closed."""
    monkeypatch.setattr(fabric_adapter, "ANSWER_LIMIT", 4 << 20)
    stream = host.stream(["yes", "no end line here"])
    started = time.monotonic()
    with pytest.raises(TransportError, match="sent over 4 MiB without ending its answer"):
        stream.exchange(None, until="@@upgrader-end ", timeout=60)
    assert time.monotonic() - started < 30, "cut off at the limit, not at the timeout"
    assert not stream.alive
    assert host.run(["true"]).ok, "the host's connection is still usable for the next call"


# --- through the jump hosts (issue 14 §2, issue 13 §6) ----------------------------------------------


def _my_connections_to(jump: str) -> int:
    """TCP connections this test process holds to the jump host's sshd (seen by `ss` on the controller)."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", "dst", config.host(jump).address, "dport", "=", ":22"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(1 for line in out.splitlines() if f"pid={os.getpid()}," in line)


def test_all_hosts_of_a_datacenter_share_one_jump_connection(vm_inventory: Path, vm_hosts: list[str]) -> None:
    inv = load_inventory(vm_inventory)
    reach = endpoints(inv.model, inv.path)
    jumps = [j.name for j in config.jump_hosts()]
    assert {j: _my_connections_to(j) for j in jumps} == dict.fromkeys(jumps, 0)
    pool = Pool(reach, timeouts=Timeouts.for_options(3.0, None))
    try:
        results = pool.each(vm_hosts, lambda h: on(pool, h).run(["hostname"]))
        assert {h: r.stdout.strip() for h, r in results.succeeded.items()} == {h: h for h in vm_hosts}
        again = pool.each(vm_hosts, lambda h: on(pool, h).run(["true"]))
        assert again.ok and all(r.ok for r in again.succeeded.values())
        during = {j: _my_connections_to(j) for j in jumps}
        assert pool._gateways[0].jump_connections == len(jumps)
        assert pool.handshake_retries == 0
    finally:
        pool.close()
    assert during == dict.fromkeys(jumps, 1), "one connection per jump host, whatever the number of hosts"
    assert {j: _my_connections_to(j) for j in jumps} == dict.fromkeys(jumps, 0), "closed with the pool"


def test_the_jump_connections_send_without_waiting_for_acks(vm_inventory: Path, vm_hosts: list[str]) -> None:
    """TCP_NODELAY on every socket the controller opens: with Nagle on, each small SSH packet behind
    an unacknowledged one waited for the peer's delayed ACK (40 ms), ~60 ms per agent start."""
    import socket

    inv = load_inventory(vm_inventory)
    pool = Pool(endpoints(inv.model, inv.path), timeouts=Timeouts.for_options(3.0, None))
    try:
        assert pool.each(vm_hosts, lambda h: on(pool, h).run(["true"])).ok
        links = list(pool._gateways[0]._links.values())
        assert links, "the lab's hosts are behind jump hosts"
        for link in links:
            assert link._conn is not None
            sock = link._conn.transport.sock
            assert isinstance(sock, socket.socket)
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1, link.endpoint.name
    finally:
        pool.close()


def test_many_handshakes_through_one_jump_host_are_paced_and_none_fails(vm_inventory: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    """3x MaxStartups' 10 new SSH connections at once, all to ny5-1 through ny5-jump's one connection.

    The jump's sshd sees none of them as startups.  ny5-1's sshd sees at most HANDSHAKES_PER_JUMP at once,
    but it counts a connection as a startup until its own child reports the login, a moment after the
    client is done: so it may still drop one now and then.  Each such refusal is retried and counted;
    none fails.  (In a run each host gets one connection, so this is the worst case, not the usual one.)
    """
    inv = load_inventory(vm_inventory)
    target = endpoints(inv.model, inv.path)["ny5-1"]
    many = {f"ny5-1#{i}": dataclasses.replace(target, name=f"ny5-1#{i}") for i in range(30)}
    pool = Pool(many, timeouts=Timeouts.for_options(5.0, None), parallel=30)
    started = time.monotonic()
    try:
        with caplog.at_level("WARNING", logger="upgrader.transport.gateways"):
            results = pool.each(many, lambda h: on(pool, h).run(["true"]))
        took = time.monotonic() - started
        assert results.failed == {} and [h for h, r in results.succeeded.items() if not r.ok] == []
        refused = [r for r in caplog.records if "refused" in r.getMessage()]
        assert pool.handshake_retries == len(refused) <= 5, [r.getMessage() for r in refused]
        assert pool._gateways[0].jump_connections == 1
    finally:
        pool.close()
    assert took < 30


def test_a_jump_host_whose_key_is_not_known_is_refused(vm_inventory: Path, tmp_path: Path) -> None:
    jump = config.host("ny5-jump")
    known = tmp_path / "known_hosts"
    known.write_text(
        "".join(
            line + "\n"
            for line in config.KNOWN_HOSTS.read_text().splitlines()
            if not line.startswith(jump.address + " ")
        )
    )
    inv = load_inventory(vm_inventory)
    reach = {
        name: dataclasses.replace(
            ep, known_hosts=str(known), jump=ep.jump and dataclasses.replace(ep.jump, known_hosts=str(known))
        )
        for name, ep in endpoints(inv.model, inv.path).items()
    }
    pool = Pool(reach, timeouts=Timeouts.for_options(3.0, None))
    try:
        with pytest.raises(HostKeyError) as caught:
            on(pool, "ny5-1").run(["true"])
        assert "ny5-jump" in str(caught.value) and jump.address in str(caught.value)
        assert _my_connections_to("ny5-jump") == 0, "the refused connection is closed, not left open"
        assert on(pool, "ch2-1").run(["true"]).ok  # the other datacenter's jump key is known
    finally:
        pool.close()


def _agents_on(pool: Pool, hosts: list[str]) -> dict[str, int]:
    """Serving agents (python3 as root, with this agent's source key) running on each host, seen by `ps`."""
    key = agent.source_key()
    out = pool.each(hosts, lambda h: on(pool, h).run(["ps", "-u", "root", "-o", "args="]))
    assert out.ok, out
    return {
        h: sum(line.startswith("python3 ") and key in line for line in r.stdout.splitlines())
        for h, r in out.succeeded.items()
    }


def test_closing_the_pool_ends_every_agent_and_connection_it_started(vm_inventory: Path, vm_hosts: list[str]) -> None:
    """Pool.close closes the jump connections first, without closing each agent's channel: every
    host's agent must still read EOF and exit, and no connection to a jump host may be left."""
    inv = load_inventory(vm_inventory)
    reach = endpoints(inv.model, inv.path)
    jumps = [j.name for j in config.jump_hosts()]
    looking = Pool(reach, timeouts=Timeouts.for_options(3.0, None))  # another pool, to look from
    try:
        before = _agents_on(looking, vm_hosts)
        pool = Pool(reach, timeouts=Timeouts.for_options(3.0, None))
        try:
            assert pool.each(vm_hosts, lambda h: remote.start(pool.session(h))).ok
            started = pool.each(vm_hosts, lambda h: pool.session(h)._held() is not None)
            assert started.ok and all(started.succeeded.values()), "every host's agent started"
            running = _agents_on(looking, vm_hosts)
            held = pool._gateways[0].jump_connections
        finally:
            pool.close()
        assert running == {h: n + 1 for h, n in before.items()}
        assert held == len(jumps)
        deadline = time.monotonic() + 10  # sshd closes the agent's stdin once the connection is gone
        while (after := _agents_on(looking, vm_hosts)) != before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert after == before, "an agent outlived the pool that started it"
    finally:
        looking.close()
    assert {j: _my_connections_to(j) for j in jumps} == dict.fromkeys(jumps, 0)


def test_an_idle_host_connection_wakes_its_reader_seldom(vm_inventory: Path, vm_hosts: list[str]) -> None:
    """Once authenticated, a host connection's reader thread waits IDLE_WAKE, not paramiko's 0.1 s, between
    wakes (at 256 hosts the 0.1 s wakes were ~30% of a rollback's controller CPU); a closed
    connection's reader still ends at once, woken by its channel's close."""
    inv = load_inventory(vm_inventory)
    pool = Pool(endpoints(inv.model, inv.path), timeouts=Timeouts.for_options(3.0, None))
    transports: dict[str, Any] = {}
    try:
        assert pool.each(vm_hosts, lambda h: on(pool, h).run(["true"])).ok
        transports = {h: pool[h]._conn.transport for h in vm_hosts}  # type: ignore[attr-defined]
        assert {h: t.sock.gettimeout() for h, t in transports.items()} == dict.fromkeys(vm_hosts, ssh.IDLE_WAKE)
        assert all(t.is_alive() for t in transports.values())
    finally:
        pool.close()
    for t in transports.values():
        t.join(ssh.IDLE_WAKE / 2)
    assert not any(t.is_alive() for t in transports.values()), "a reader thread outlived its closed connection"
