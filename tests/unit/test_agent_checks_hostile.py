"""Host-side checks the service account cannot fool or hang (issue 25 §4), on real files and processes.

Each attack is carried out as uid 65534 (nobody): a FIFO, a symlink or a 10 GiB sparse file where the
service's log should be, a process whose command line holds a process check's match string.  The
real agent code (root here) then runs the check; each test records what it saw and how long it took.
tests/vm/test_hostile_checks.py does the FIFO and the fake process on the lab's hosts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.unit import agent_code

NOBODY = 65534
MATCH = "/opt/ordergw/current/bin/ordergw"


@pytest.fixture
def agent(tmp_path: Path) -> ModuleType:
    return agent_code.load("upgrader_agent_hostile_checks", tmp_path / "state")


@pytest.fixture
def logdir() -> Iterator[Path]:
    """/tmp/…/log owned by nobody, as /var/log/<service> is owned by the service user."""
    top = Path(tempfile.mkdtemp(prefix="upgrader-hostile-", dir="/tmp"))
    top.chmod(0o755)
    log = top / "log"
    log.mkdir()
    os.chown(log, NOBODY, NOBODY)
    yield log
    shutil.rmtree(top, ignore_errors=True)


def as_nobody(*argv: str) -> None:
    subprocess.run(list(argv), user=NOBODY, group=NOBODY, check=True, timeout=30)


def timed_check(agent: ModuleType, check: dict, ctx: dict, limit: float = 30.0) -> tuple[str | None, float]:
    """check_once in a thread of the test's own, so an old agent that blocks fails the test, not hangs it."""
    box: list[str | None] = []
    started = time.monotonic()
    worker = threading.Thread(target=lambda: box.append(agent.check_once(check, ctx)), daemon=True)
    worker.start()
    worker.join(limit)
    assert box, f"check_once did not return within {limit} s"
    return box[0], time.monotonic() - started


def log_check(path: Path, timeout: float = 2.0) -> dict:
    return {"name": "ready", "kind": "log", "log": {"path": str(path), "pattern": "ready"}, "timeout": timeout}


def ctx(tmp_path: Path) -> dict:
    return {"component": "app", "run": "R1", "root": str(tmp_path / "opt")}


@pytest.mark.reliability(
    "the service user (uid 65534) replaces its log with a FIFO; root's log check runs",
    "the check fails at once naming a non-regular file; it never blocks in open()",
)
def test_a_fifo_for_a_log_does_not_hang_the_check(agent, logdir, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    fifo = logdir / "app.log"
    as_nobody("mkfifo", str(fifo))
    assert fifo.is_fifo() and fifo.stat().st_uid == NOBODY
    reason, seconds = timed_check(agent, log_check(fifo), ctx(tmp_path))
    record_property("observed", f"{seconds:.3f} s: {reason}")
    assert reason == f"log {fifo} is not a regular file" and seconds < 2.0


@pytest.mark.reliability(
    "the service user points its log at a root-only file holding the pattern (a symlink)",
    "refused: the link is not followed, the check fails saying so",
)
def test_a_symlinked_log_is_not_followed(agent, logdir, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret"
    secret.write_text("ready\n")
    secret.chmod(0o600)
    link = logdir / "app.log"
    as_nobody("ln", "-s", str(secret), str(link))
    reason, seconds = timed_check(agent, log_check(link), ctx(tmp_path))
    record_property("observed", f"{seconds:.3f} s: {reason}")
    assert reason == f"log {link} is a symlink: name the file itself"


@pytest.mark.reliability(
    "the service user makes its log a 10 GiB sparse file",
    "at most LOG_READ (8 MiB) read; the check answers within its timeout",
)
def test_a_huge_log_is_read_only_up_to_the_bound(agent, logdir, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    big = logdir / "app.log"
    as_nobody("truncate", "-s", "10G", str(big))
    read: list[int] = []
    real = agent.os.pread
    agent.os.pread = lambda fd, n, at: read.append(n) or real(fd, n, at)  # type: ignore[func-returns-value]
    try:
        reason, seconds = timed_check(agent, log_check(big), ctx(tmp_path))
    finally:
        agent.os.pread = real
    record_property(
        "observed", f"{seconds:.3f} s, asked for {read} bytes of a {big.stat().st_size} byte file: {reason}"
    )
    assert read == [agent.LOG_READ] and reason is not None and "no line matching" in reason and seconds < 2.0


@pytest.mark.reliability(
    "a check whose probe never returns (a read on a hung mount, stood in for by a probe that sleeps 60 s)",
    "abandoned at its timeout + CHECK_GRACE; the check fails saying so",
)
def test_every_check_is_bounded_by_its_timeout(agent, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    agent.log_matches = lambda path, offset, pattern: time.sleep(60)
    reason, seconds = timed_check(agent, log_check(tmp_path / "x.log", timeout=0.5), ctx(tmp_path))
    record_property("observed", f"{seconds:.2f} s (timeout 0.5 s + grace {agent.CHECK_GRACE} s): {reason}")
    assert reason is not None and reason.startswith("did not finish within 1.5s") and seconds < 3.0


# ---------------------------------------------------------------- process checks


@pytest.fixture
def impostor() -> Iterator[subprocess.Popen[bytes]]:
    """A process of uid 65534 whose command line holds the match string (the service itself is down)."""
    proc = subprocess.Popen(["/bin/sh", "-c", f"sleep 60; : {MATCH}"], user=NOBODY, group=NOBODY)
    time.sleep(0.2)
    yield proc
    proc.kill()
    proc.wait()


def own_cgroup() -> str:
    return Path("/proc/self/cgroup").read_text().splitlines()[0].split(":", 2)[2]


def process_check(**spec: str) -> dict:
    return {"name": "proc", "kind": "process", "process": {"match": MATCH, **spec}, "timeout": 2.0}


@pytest.mark.reliability(
    "uid 65534 runs a process whose command line holds the match string while the service (a systemd unit) is down",
    "the process check fails: the impostor is not in the unit's control group",
)
def test_a_process_outside_the_units_cgroup_does_not_count(agent, impostor, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    c = {**ctx(tmp_path), "cgroups": {"ordergw.service": "/system.slice/ordergw.service"}}
    reason, _ = timed_check(agent, process_check(unit="ordergw.service"), c)
    # The control: the same impostor counts when the check's control group is the one it is in.
    here = {**c, "cgroups": {"here.service": own_cgroup()}}
    control, _ = timed_check(agent, process_check(unit="here.service"), here)
    record_property("observed", f"unit's cgroup: {reason}; impostor's own cgroup {own_cgroup()!r}: {control}")
    assert reason is not None and "no process matches" in reason and control is None


@pytest.mark.reliability(
    "uid 65534 runs a matching process; the check names the service's user (daemon, uid 1)",
    "the process check fails: the impostor runs as another user",
)
def test_a_process_of_another_user_does_not_count(agent, impostor, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    reason, _ = timed_check(agent, process_check(user="daemon"), ctx(tmp_path))
    control, _ = timed_check(agent, process_check(user="nobody"), ctx(tmp_path))
    record_property("observed", f"user daemon: {reason}; user nobody (the impostor's): {control}")
    assert reason is not None and "running as daemon (uid 1)" in reason and control is None


@pytest.mark.reliability(
    "a process check with neither a systemd unit nor a user, and a matching impostor",
    "the check fails: nothing tells the service's processes from anyone's",
)
def test_a_process_check_without_a_scope_passes_nothing(agent, impostor, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    reason, _ = timed_check(agent, process_check(), ctx(tmp_path))
    record_property("observed", str(reason))
    assert reason is not None and reason.startswith("a process check needs the service's systemd unit")


def test_the_unit_comes_from_the_service_when_the_check_has_none(agent, impostor, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Checks recorded before the plan named the unit: verify's and bake's service gives it."""
    c = {**ctx(tmp_path), "cgroups": {"ordergw.service": "/system.slice/ordergw.service"}}
    reason = agent.check_once(process_check(), c, {"systemd": "ordergw.service"})
    assert reason is not None and "in ordergw.service's control group" in reason


# ---------------------------------------------------------------- tcp, http and version checks on this machine

LISTENER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Type: application/json\\r\\n\\r\\n{"status": "ok", "version": "5.2.0"}')
    c.close()
"""


@pytest.fixture
def fake_service() -> Iterator[tuple[subprocess.Popen[str], int]]:
    """uid 65534 listening on a loopback port and answering like the service's health endpoint."""
    proc = subprocess.Popen(
        ["/usr/bin/python3", "-c", LISTENER], user=NOBODY, group=NOBODY, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    yield proc, port
    proc.kill()
    proc.wait()


SERVICE = {"systemd": "ordergw.service"}


@pytest.mark.reliability(
    "uid 65534 binds the service's port on 127.0.0.1 and answers its tcp, http and version "
    "checks (the service, a systemd unit, is elsewhere)",
    "each check fails: the listening socket is not held inside the unit's control group; held there, they pass",
)
def test_a_listener_outside_the_unit_does_not_pass_tcp_http_or_version(
    agent,
    fake_service,
    tmp_path,  # type: ignore[no-untyped-def]
    record_property,
) -> None:
    _, port = fake_service
    url = f"http://127.0.0.1:{port}/health"
    checks = {
        "tcp": {"name": "t", "kind": "tcp", "tcp": {"port": port}, "timeout": 2.0},
        "http": {"name": "h", "kind": "http", "http": {"url": url, "body": "ok"}, "timeout": 2.0},
        "version": {"name": "v", "kind": "version", "version": {"url": url}, "timeout": 2.0},
    }
    elsewhere = {
        **ctx(tmp_path),
        "cgroups": {"ordergw.service": "/system.slice/ordergw.service"},
        "expect_version": "5.2.0",
    }
    here = {**elsewhere, "cgroups": {"ordergw.service": own_cgroup()}}  # the control: the listener's own group
    seen = {
        kind: (agent.check_once(c, dict(elsewhere), SERVICE), agent.check_once(c, dict(here), SERVICE))
        for kind, c in checks.items()
    }
    unscoped = {kind: agent.check_once(c, dict(elsewhere)) for kind, c in checks.items()}  # prechecks: no service
    record_property(
        "observed",
        "; ".join(f"{k}: {v[0]} / own group: {v[1]}" for k, v in seen.items())
        + f"; without a service (prechecks): {unscoped}",
    )
    for kind, (outside, inside) in seen.items():
        assert outside is not None and f"port {port} is not served by ordergw.service" in outside, kind
        assert inside is None, kind
    assert set(unscoped.values()) == {None}


@pytest.fixture
def wildcard_service() -> Iterator[tuple[subprocess.Popen[str], int]]:
    """uid 65534 listening on every address (0.0.0.0), answering like the service's health endpoint."""
    code = LISTENER.replace('s.bind(("127.0.0.1", 0))', 's.bind(("0.0.0.0", 0))')
    proc = subprocess.Popen(
        ["/usr/bin/python3", "-c", code], user=NOBODY, group=NOBODY, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    yield proc, port
    proc.kill()
    proc.wait()


def own_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses, as the kernel routes to them (no interface listing)."""
    import socket

    found = []
    for probe in ("192.0.2.1", "10.255.255.1", "198.51.100.1"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.connect((probe, 9))  # UDP: nothing is sent; the kernel picks the source address
            found.append(s.getsockname()[0])
        except OSError:
            pass
        finally:
            s.close()
    return sorted(set(a for a in found if not a.startswith("127.")))


@pytest.mark.reliability(
    "uid 65534 binds the service's port on 0.0.0.0 while the checks name this machine other "
    "than by 127.x/localhost (0.0.0.0, its own addresses)",
    "each check fails: the listener is not in the unit's control group, whatever the name",
)
def test_a_listener_outside_the_unit_does_not_pass_under_another_name_for_this_machine(  # type: ignore[no-untyped-def]
    agent, wildcard_service, tmp_path, record_property
) -> None:
    _, port = wildcard_service
    names = ["0.0.0.0", *own_addresses()]
    elsewhere = {
        **ctx(tmp_path),
        "cgroups": {"ordergw.service": "/system.slice/ordergw.service"},
        "expect_version": "5.2.0",
    }
    seen = {}
    for name in names:
        url = f"http://{name}:{port}/health"
        checks = {
            "tcp": {"name": "t", "kind": "tcp", "tcp": {"host": name, "port": port}, "timeout": 2.0},
            "http": {"name": "h", "kind": "http", "http": {"url": url, "body": "ok"}, "timeout": 2.0},
        }
        for kind, c in checks.items():
            seen[f"{kind} {name}"] = agent.check_once(c, dict(elsewhere), SERVICE)
    record_property("observed", "; ".join(f"{k}: {v}" for k, v in seen.items()))
    for what, reason in seen.items():
        assert reason is not None and f"port {port} is not served by ordergw.service" in reason, what


@pytest.mark.reliability(
    "the log's directory leads into a mount that never answers (stat blocks) when a start remembers where the log ends",
    "the start goes on within the bound (offset 0: the "
    "whole log is read later); it does not hang with the host lock held",
)
def test_a_hung_log_path_does_not_hang_a_start(agent, tmp_path, monkeypatch, record_property) -> None:  # type: ignore[no-untyped-def]
    hung = str(tmp_path / "nfs" / "ordergw.log")
    real_stat, real_lstat = os.stat, os.lstat
    release = threading.Event()

    def blocking(real):  # type: ignore[no-untyped-def]
        def stat(path, *args, **kwargs):  # type: ignore[no-untyped-def]
            if str(path) == hung:
                release.wait(60)
            return real(path, *args, **kwargs)

        return stat

    monkeypatch.setattr(agent, "LOG_STAT_TIMEOUT", 0.5, raising=False)
    monkeypatch.setattr(os, "stat", blocking(real_stat))
    monkeypatch.setattr(os, "lstat", blocking(real_lstat))
    box: list[float] = []
    started = time.monotonic()
    worker = threading.Thread(
        target=lambda: (agent.remember_log_offsets(ctx(tmp_path), [hung]), box.append(time.monotonic() - started)),
        daemon=True,
    )
    worker.start()
    worker.join(10)
    release.set()
    monkeypatch.undo()
    assert box, "remember_log_offsets did not return within 10 s"
    offsets = agent.read_json(os.path.join(agent.state_dir("app"), "start.json"))
    assert offsets == {hung: 0} and box[0] < 5
    record_property("observed", f"returned after {box[0]:.2f} s; offsets {offsets}")
