"""Agents started ahead of the first call (engine.remote.start, used by `apply`/`rollback` start-up) on real hosts."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from testinfra.host import Host

from tests.vm.upgrader_cli import playbook, write
from upgrader import agent
from upgrader.commands import early
from upgrader.engine import facts as host_facts
from upgrader.engine import remote
from upgrader.engine.endpoints import endpoints
from upgrader.engine.pool import Pool
from upgrader.errors import TransportError
from upgrader.loading.inputs import load_inventory, load_playbook
from upgrader.transport.base import Timeouts

TIMEOUTS = Timeouts.for_options(2.0, None)


@pytest.fixture
def pool(vm_inventory: Path) -> Iterator[Pool]:
    inv = load_inventory(vm_inventory)
    p = Pool(endpoints(inv.model, inv.path), timeouts=TIMEOUTS)
    try:
        yield p
    finally:
        p.close()


def agents(host: Host) -> int:
    """Serving agents (python3, as root) running on the host."""
    out = host.check_output("ps -u root -o comm=,args= | grep -c '^python3 .*%s' || true", agent.source_key())
    return int(out.strip() or 0)


def mark(host: Host) -> int:
    """The host's clock now, in µs: sudo's journal entries after it are this test's.

    (Not a journal cursor: journald may start a new file with new sequence numbers meanwhile.)
    """
    return int(host.check_output("date +%s%6N"))


def sudo_log(host: Host, since: int) -> list[str]:
    out = host.check_output("journalctl -t sudo -o json --output-fields=MESSAGE --since -10min")
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [str(e.get("MESSAGE", "")) for e in entries if int(e["__REALTIME_TIMESTAMP"]) > since]


def agent_starts(host: Host, since: int) -> int:
    """Agents sudo started on the host since ``since`` (sudo logs each command it runs).

    sudo's log reaches the journal asynchronously: wait for the first, then a moment for any other.
    """

    def count() -> int:
        return sum(bool(re.search(r"COMMAND=.*python3 -I -S", m)) for m in sudo_log(host, since))

    deadline = time.monotonic() + 10
    while count() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    return count()


def settled(host: Host, want: int) -> int:
    """The agent count once it has reached ``want`` (closed channels end their agents shortly after)."""
    deadline = time.monotonic() + 10
    while (n := agents(host)) != want and time.monotonic() < deadline:
        time.sleep(0.1)
    return n


def facts_call(pool: Pool, host: str) -> remote.AgentResult:
    return remote.call(
        pool.session(host),
        component="feedhandler",
        root="/opt/feedhandler",
        run=None,
        ops=[{"op": "facts", "service": None, "version_check": None, "journal_lines": 0}],
        timeout=10,
        idempotent=True,
    )


def test_the_first_call_uses_the_agent_started_early(
    pool: Pool, vm_hosts: list[str], vm_host: Callable[[str], Host]
) -> None:
    name, host = vm_hosts[0], vm_host(vm_hosts[0])
    before, since = agents(host), mark(host)
    remote.start(pool.session(name))
    started = pool.session(name)._held()
    assert settled(host, before + 1) == before + 1
    res = facts_call(pool, name)
    assert res.ok and (facts := res.op("facts")) is not None and facts.data["installed"]
    assert pool.session(name)._held() is started and agents(host) == before + 1  # no second agent
    assert agent_starts(host, since) == 1
    # Its command line was a short loader: sudo logged it whole, not in "(command continued)" pieces.
    logged = "\n".join(sudo_log(host, since))
    assert "COMMAND=" in logged and "command continued" not in logged and agent.packed_source()[:40] not in logged


def test_a_call_made_while_the_agent_is_starting_waits_for_it(
    pool: Pool, vm_hosts: list[str], vm_host: Callable[[str], Host]
) -> None:
    name, host = vm_hosts[1], vm_host(vm_hosts[1])
    before, since = agents(host), mark(host)
    starting = threading.Thread(target=remote.start, args=(pool.session(name),))
    starting.start()
    res = facts_call(pool, name)  # most likely while sshd, sudo and python are still starting
    starting.join()
    assert res.ok and settled(host, before + 1) == before + 1
    assert agent_starts(host, since) == 1  # the call did not start an agent of its own


def test_a_frozen_host_is_reported_by_the_first_call_without_waiting_twice(
    pool: Pool, vm_hosts: list[str], faults: object
) -> None:
    name = vm_hosts[0]
    faults.freeze(name)  # type: ignore[attr-defined]
    began = time.monotonic()
    remote.start(pool.session(name))
    start_took = time.monotonic() - began
    with pytest.raises(TransportError) as caught:
        facts_call(pool, name)
    assert "cannot reach" in str(caught.value) or "did not" in str(caught.value)
    # The call raised what the start met instead of trying the same timeouts again.
    assert time.monotonic() - began - start_took < TIMEOUTS.connect


def test_apply_start_up_hands_its_early_agents_to_the_run(tmp_path: Path, vm_inventory: Path) -> None:
    """early.start (from the command line, before the models load) → adopt → facts, on the started agents."""
    inv = load_inventory(vm_inventory)
    reach = endpoints(inv.model, inv.path)
    early.remember(tmp_path, inv.sha256, inv.model, reach)
    pb = write(tmp_path / "feedhandler.yml", playbook("feedhandler", "3.1.0"))
    began = early.start(["apply", str(pb), "-i", str(vm_inventory), "--yes", "--connect-timeout", "2"], tmp_path)
    assert began is not None
    started = began.pool.sessions()
    spec = load_playbook(pb).model
    pool = Pool(reach, timeouts=TIMEOUTS)
    try:
        early.adopt(pool, began, inv.sha256)
        assert started and all(pool.session(name) is session for name, session in started.items())
        facts, _ = host_facts.gather(pool, inv.model, spec)
        assert set(facts.hosts) == set(started)
        assert all(f.reachable for f in facts.hosts.values())
        assert all((s._held() or ("",))[0] == "python3" for s in started.values())
    finally:
        pool.close()
