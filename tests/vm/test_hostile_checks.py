"""Host-side checks the service account cannot fool or hang (issue 25 §4), on a lab host with real systemd.

The attacks are made as `nobody` inside the container; the checks are sent to the real agent over real
SSH as a `verify` operation (engine/remote.call, as the engine sends it).  The unit tests of the same
attacks are tests/unit/test_agent_checks_hostile.py; these show the agent's control-group lookup and the
non-blocking open work on the hosts themselves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import config, lxc
from upgrader.engine import remote
from upgrader.engine.endpoints import endpoints
from upgrader.engine.pool import Pool
from upgrader.loading.inputs import load_inventory
from upgrader.transport.base import Timeouts

COMPONENT = "feedhandler"
SERVICE = {"systemd": f"{COMPONENT}.service", "start_timeout": 20.0, "stop_timeout": 10.0}
MATCH = f"/opt/{COMPONENT}/current/bin/{COMPONENT}"
HOSTILE_DIR = "/var/tmp/upgrader-hostile"


@pytest.fixture
def host(vm_hosts: list[str], reset_hosts: None) -> Iterator[str]:
    name = vm_hosts[0]
    yield name
    lxc.attach(
        config.host(name).container,  # leave it as found: no planted files, no impostor, service up
        f"pkill -u nobody -f upgrader-impostor || true; rm -rf {HOSTILE_DIR}; systemctl start {COMPONENT}.service",
        check=False,
    )


@pytest.fixture
def pool(vm_inventory: Path) -> Iterator[Pool]:
    inv = load_inventory(vm_inventory)
    pool = Pool(endpoints(inv.model, inv.path), timeouts=Timeouts.for_options(10.0, None))
    yield pool
    pool.close()


def as_root(host: str, script: str) -> None:
    lxc.attach(config.host(host).container, script)


def as_nobody(host: str, script: str) -> None:
    as_root(host, f"su -s /bin/sh nobody -c '{script}'")


def verify(pool: Pool, host: str, checks: list[dict[str, Any]]) -> tuple[remote.AgentResult, float]:
    op = {"op": "verify", "step": "hostile-check", "service": SERVICE, "checks": checks}
    started = time.monotonic()
    result = remote.call(
        pool.session(host), component=COMPONENT, root=f"/opt/{COMPONENT}", run=None, ops=[op], timeout=120
    )
    return result, time.monotonic() - started


@pytest.mark.reliability(
    "on a lab host, the service user (nobody here) puts a FIFO where a log check reads; "
    "root's agent runs verify over SSH",
    "verify fails within seconds naming a non-regular file; the agent does not block in open()",
)
def test_a_fifo_log_does_not_hang_verify_on_a_host(host, pool, record_property) -> None:  # type: ignore[no-untyped-def]
    as_root(host, f"mkdir -p {HOSTILE_DIR} && chown nobody {HOSTILE_DIR} && chmod 755 {HOSTILE_DIR}")
    as_nobody(host, f"mkfifo {HOSTILE_DIR}/app.log")
    check = {
        "name": "ready",
        "kind": "log",
        "log": {"path": f"{HOSTILE_DIR}/app.log", "pattern": "ready"},
        "timeout": 2.0,
        "retries": 0,
        "interval": 1.0,
    }
    result, seconds = verify(pool, host, [check])
    record_property("observed", f"{host}: verify ok={result.ok} in {seconds:.2f} s over SSH: {result.error[:160]}")
    assert not result.ok and "is not a regular file" in result.error and seconds < 20


@pytest.mark.reliability(
    "on a lab host, nobody runs a process whose command line holds a process check's match "
    "string: (a) beside the running service, matching only the impostor; (b) with the service "
    "stopped",
    "both checks fail (the impostor is not in the unit's control group; a stopped "
    "unit has none); the real service's own check passes",
)
def test_an_impostor_process_does_not_pass_a_process_check_on_a_host(host, pool, record_property) -> None:  # type: ignore[no-untyped-def]
    def check(match: str) -> dict[str, Any]:
        return {
            "name": "running",
            "kind": "process",
            "process": {"match": match, "unit": SERVICE["systemd"]},
            "timeout": 2.0,
            "retries": 0,
            "interval": 1.0,
        }

    control, _ = verify(pool, host, [check(MATCH)])  # the real service, in its own control group: passes
    as_nobody(host, f'nohup /bin/sh -c "sleep 120; : upgrader-impostor {MATCH}" >/dev/null 2>&1 &')
    time.sleep(0.5)
    beside, _ = verify(pool, host, [check("upgrader-impostor")])  # only the impostor matches
    as_root(host, f"systemctl stop {COMPONENT}.service")
    stopped, seconds = verify(pool, host, [check(MATCH)])
    record_property(
        "observed",
        f"{host}: real service → ok={control.ok}; impostor beside it → ok={beside.ok}: "
        f"{beside.error[:120]}; service stopped → ok={stopped.ok} in {seconds:.2f} s: "
        f"{stopped.error[:120]}",
    )
    assert control.ok, control.error
    assert not beside.ok and "no process matches" in beside.error and "control group" in beside.error
    assert not stopped.ok and "not running" in stopped.error


IMPOSTOR_SERVER = """# upgrader-impostor: answers like the service's health endpoint
import socket
import sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(8)
while True:
    c = s.accept()[0]
    c.recv(4096)
    c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Type: application/json\\r\\n\\r\\n{"status": "ok"}')
    c.close()
"""


@pytest.mark.reliability(
    "on a lab host, nobody listens on a port a tcp/http check names and answers like the "
    "service: (a) port 9109 beside the running service; (b) the service's own port 9101 with "
    "the service stopped",
    "every such check fails (the listener is not in the unit's control "
    "group; a stopped unit has none); the real service's checks pass",
)
def test_an_impostor_listener_does_not_pass_http_checks_on_a_host(host, pool, record_property) -> None:  # type: ignore[no-untyped-def]
    def checks(port: int) -> list[dict[str, Any]]:
        return [
            {
                "name": "health",
                "kind": "http",
                "http": {"url": f"http://127.0.0.1:{port}/health"},
                "timeout": 2.0,
                "retries": 0,
                "interval": 1.0,
            },
            {"name": "tcp", "kind": "tcp", "tcp": {"port": port}, "timeout": 2.0, "retries": 0, "interval": 1.0},
        ]

    control, _ = verify(pool, host, checks(9101))
    as_root(host, f"cat > /tmp/upgrader-impostor.py <<'PY'\n{IMPOSTOR_SERVER}PY\nchmod 644 /tmp/upgrader-impostor.py")
    as_nobody(host, "nohup python3 /tmp/upgrader-impostor.py 9109 >/dev/null 2>&1 &")
    time.sleep(1.0)
    beside, _ = verify(pool, host, checks(9109))
    as_root(host, f"systemctl stop {COMPONENT}.service")
    as_nobody(host, "nohup python3 /tmp/upgrader-impostor.py 9101 >/dev/null 2>&1 &")
    time.sleep(1.0)
    stopped, seconds = verify(pool, host, checks(9101))
    as_root(host, "pkill -u nobody -f upgrader-impostor; rm -f /tmp/upgrader-impostor.py")
    record_property(
        "observed",
        f"{host}: real service → ok={control.ok}; nobody on :9109 beside it → ok={beside.ok}: "
        f"{beside.error[:140]}; service stopped, nobody on :9101 → ok={stopped.ok} in {seconds:.2f} s: "
        f"{stopped.error[:140]}",
    )
    assert control.ok, control.error
    assert not beside.ok and "port 9109 is not served by feedhandler.service" in beside.error
    assert not stopped.ok and "feedhandler.service has no control group" in stopped.error
