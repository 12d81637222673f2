"""Faults during real runs on the lab: every host ends on a known version, nothing is lost.

Each test names its scenario for docs/reliability.md (see tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from lab import config
from tests.vm.hoststate import assert_on, assert_unlocked, component
from tests.vm.upgrader_cli import WEEKEND, Upgrader, kill9, playbook, write
from upgrader import agent

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.reliability


def killed_at(upgrader: Upgrader, pb: Path, point) -> str:  # type: ignore[no-untyped-def]
    proc = upgrader.start_apply(pb)
    upgrader.wait_for(point)
    kill9(proc)
    assert not any(e["event"] == "run-end" for e in upgrader.journal())
    return upgrader.runs()[-1].name


def event(name: str, host: str | None = None):  # type: ignore[no-untyped-def]
    return lambda es: any(e["event"] == name and (host is None or e.get("host") == host) for e in es)


@pytest.mark.parametrize(
    ("where", "point"),
    [
        ("staging", event("stage-begin")),
        ("mid-canary", event("host-begin", "ny5-1")),
        ("during the bake", event("bake-begin", "ny5-1")),
        ("mid-wave", event("host-begin", "ch2-2")),
    ],
)
def test_sigkill_then_resume_finishes_the_upgrade(upgrader, vm_host, vm_hosts, tmp_path, record_property, where, point):  # type: ignore[no-untyped-def]
    reliability_mark(
        record_property,
        f"orchestrator SIGKILLed {where}, then `resume`",
        "every host on the target, verified; locks released; exit 0",
    )
    pb = write(tmp_path / "pb.yml", playbook("feedhandler", "3.1.0", canary={"bake": "3s"}))
    run_id = killed_at(upgrader, pb, point)
    resumed = upgrader("resume", run_id, "--yes", *WEEKEND, "--log-format", "plain")
    assert resumed.code == 0, resumed.output
    assert_on(vm_host, vm_hosts, "feedhandler", "3.1.0")
    assert_unlocked(vm_host, vm_hosts, "feedhandler")
    recover = next(e for e in upgrader.journal() if e["event"] == "resume")
    record_property("observed", f"resumed: done {recover['done'] or '-'}, put back {recover['back'] or '-'}; exit 0")


def test_sigkill_mid_rollback_then_resume_completes_the_rollback(
    upgrader, vm_host, vm_hosts, tmp_path, record_property
):  # type: ignore[no-untyped-def]
    reliability_mark(
        record_property,
        "orchestrator SIGKILLed mid-rollback, then `resume`",
        "the rollback completes: every host on the old version, verified; exit 3",
    )
    pb = write(tmp_path / "pb.yml", playbook("ordergw", "5.1.1+crash", canary={"bake": "8s"}))
    run_id = killed_at(upgrader, pb, event("rollback-begin"))
    resumed = upgrader("resume", run_id, "--yes", *WEEKEND, "--log-format", "plain")
    assert resumed.code == 3, resumed.output
    assert_on(vm_host, vm_hosts, "ordergw", "5.0.0")
    assert_unlocked(vm_host, vm_hosts, "ordergw")
    record_property("observed", "rollback finished by resume; exit 3")


def test_host_powered_off_mid_upgrade(upgrader, vm_host, vm_hosts, tmp_path, faults, record_property):  # type: ignore[no-untyped-def]
    reliability_mark(
        record_property,
        "host stopped hard (power off) during its canary bake",
        "reported within the timeout, exit 4 naming it; after power-on `rollback` restores it",
    )
    pb = write(tmp_path / "pb.yml", playbook("ordergw", "5.1.0", canary={"bake": "20s"}, rollback="host"))
    proc = upgrader.start_apply(pb, "--connect-timeout", "3")
    upgrader.wait_for(event("bake-begin", "ny5-1"))
    started = time.monotonic()
    faults.kill("ny5-1")
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - started
    assert proc.returncode == 4 and "ny5-1" in err, out + err
    assert_on(vm_host, vm_hosts[1:], "ordergw", "5.0.0")
    faults.start("ny5-1")
    back = upgrader(
        "rollback",
        "ordergw",
        "-i",
        str(upgrader.inventory),
        "--reason",
        "power loss",
        "--yes",
        "--hosts",
        "ny5-1",
        "--playbook",
        str(pb),
    )
    assert back.code == 0, back.output
    assert_on(vm_host, vm_hosts, "ordergw", "5.0.0")
    record_property("observed", f"exit 4 naming ny5-1 {took:.0f} s after power-off; rollback after boot: exit 0")


def _errors_by_host(journal: list[dict]) -> dict[str, list[str]]:
    """Every error the journal holds, by host (events' own errors and the per-host maps of lock release)."""
    found: dict[str, list[str]] = {}
    for e in journal:
        if e.get("host") and e.get("error"):
            found.setdefault(e["host"], []).append(e["error"])
        for host, error in (e.get("errors") or {}).items():
            found.setdefault(host, []).append(error)
    return found


@pytest.mark.parametrize("fault", ["kill", "cut"])
def test_jump_host_dies_mid_run(upgrader, vm_host, vm_hosts, tmp_path, faults, record_property, fault):  # type: ignore[no-untyped-def]
    how = {"kill": "powered off", "cut": "cut off (its upgbr0 link down: packets vanish)"}[fault]
    reliability_mark(
        record_property,
        f"a datacenter's jump host {how} during its canary's bake",
        "every host behind it reported unreachable within the timeouts; the run halts (exit 4); the "
        "other datacenter is left clean and unlocked; once the jump host is back `rollback` puts "
        "the caught hosts back",
    )
    pb = write(tmp_path / "pb.yml", playbook("ordergw", "5.1.0", canary={"bake": "20s"}, rollback="host"))
    proc = upgrader.start_apply(pb, "--connect-timeout", "3")
    upgrader.wait_for(event("bake-begin", "ny5-1"))
    started = time.monotonic()
    getattr(faults, fault)("ny5-jump")
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - started
    journal = upgrader.journal()
    end = next(e for e in journal if e["event"] == "run-end")
    states = {h: v["state"] for h, v in end["hosts"].items()}
    ny5 = [h for h in vm_hosts if h.startswith("ny5-")]
    ch2 = [h for h in vm_hosts if h.startswith("ch2-")]
    assert proc.returncode == 4 and "ny5-1" in err, out + err
    assert took < 45, f"halted {took:.0f} s after the jump host died"
    errors = _errors_by_host(journal)
    for h in ny5:  # each host behind the dead jump host is recorded unreachable through it
        assert any("ny5-jump" in e for e in errors.get(h, [])), (h, errors)
    assert not [h for h in ch2 if h in errors], errors
    for h in ch2:  # the other datacenter: on a known version, running it, unlocked
        state = component(vm_host(h), "ordergw")
        assert state.active and state.current == state.reported and state.current in ("5.0.0", "5.1.0"), (h, state)
    assert_unlocked(vm_host, ch2, "ordergw")
    assert end["handshake_retries"] >= 0
    faults.heal("ny5-jump")
    caught = component(vm_host("ny5-1"), "ordergw")
    back = upgrader(
        "rollback",
        "ordergw",
        "-i",
        str(upgrader.inventory),
        "--reason",
        "jump host lost",
        "--yes",
        "--dc",
        "ny5",
        "--to",
        "5.0.0",
        "--playbook",
        str(pb),
    )
    assert back.code == 0, back.output
    assert_on(vm_host, vm_hosts, "ordergw", "5.0.0")
    assert_unlocked(vm_host, vm_hosts, "ordergw")
    record_property(
        "observed",
        f"exit 4 {took:.1f} s after the fault; ny5-1 {states['ny5-1']}, "
        f"{', '.join(h for h in ny5 if h != 'ny5-1')} unreachable via ny5-jump (lock release); "
        + ", ".join(f"{h} {states[h]}" for h in ch2)
        + f" untouched and unlocked; ny5-1 was on "
        f"{caught.current} when the jump host came back; rollback --dc ny5: exit 0, all on 5.0.0",
    )


def test_serving_agent_killed_between_programs(upgrader, vm_host, vm_hosts, tmp_path, record_property):  # type: ignore[no-untyped-def]
    reliability_mark(
        record_property,
        "the serving agent on a waiting host is killed between programs",
        "the next program starts a fresh agent on that host; the run finishes, exit 0",
    )
    pb = write(tmp_path / "pb.yml", playbook("feedhandler", "3.1.0", canary={"bake": "3s"}))
    proc = upgrader.start_apply(pb)
    upgrader.wait_for(event("bake-begin", "ny5-1"))
    # ch2-2 has served the lock and stage programs and now waits for its wave.  A serving agent's
    # command line carries the digest of its source; "[x]yz…" must not match the shell running pkill.
    key = agent.source_key()
    killed = vm_host("ch2-2").run("sudo pkill -KILL -f -- %s", f"[{key[0]}]{key[1:]}")
    assert killed.rc == 0, "no serving agent found on ch2-2"
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, out + err
    assert_on(vm_host, vm_hosts, "feedhandler", "3.1.0")
    record_property("observed", "agent SIGKILLed on ch2-2 during the canary bake; run exit 0, all hosts on 3.1.0")


def test_link_cut_then_restored(upgrader, vm_host, vm_hosts, tmp_path, faults, record_property):  # type: ignore[no-untyped-def]
    reliability_mark(
        record_property,
        "a host's link cut mid-run, then restored",
        "reported within the timeout, exit 4; after restore a re-apply with --break-lock finishes",
    )
    pb = write(tmp_path / "pb.yml", playbook("feedhandler", "3.1.0", canary={"bake": "3s"}))
    proc = upgrader.start_apply(pb, "--connect-timeout", "3")
    upgrader.wait_for(event("bake-begin", "ny5-1"))
    faults.cut("ch2-2")
    started = time.monotonic()
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 4 and "ch2-2" in err, out + err
    took = time.monotonic() - started
    faults.restore("ch2-2")
    again = upgrader.apply(pb, "--break-lock", "link to ch2-2 restored; run checked by pytest")
    assert again.code == 0, again.output
    assert_on(vm_host, vm_hosts, "feedhandler", "3.1.0")
    assert any(e["event"] == "lock-break" for e in upgrader.journal())
    record_property("observed", f"exit 4 after {took:.0f} s; re-apply with --break-lock: exit 0")


def test_sshd_down_refuses_before_changing_anything(upgrader, vm_host, vm_hosts, tmp_path, faults, record_property):  # type: ignore[no-untyped-def]
    reliability_mark(
        record_property, "sshd dead on one host when apply starts", "refused before any change (exit 1), host named"
    )
    faults.sshd_stop("ch2-1")
    run = upgrader.apply(REPO / "playbooks" / "feedhandler-3.1.0.yml")
    assert run.code == 1 and "ch2-1" in run.stderr, run.output
    faults.sshd_start("ch2-1")
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    assert_unlocked(vm_host, vm_hosts, "feedhandler")
    record_property("observed", "exit 1: " + run.stderr.strip().splitlines()[-1][:90])


class DelayProxy:
    """A TCP relay on loopback that delays every chunk: a slow, jittery WAN link to one host."""

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target, self.delay = target, delay
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.server.settimeout(0.5)
        while not self.stopped.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)  # the 5 s is for connecting; an SSH session may be quiet for longer
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                time.sleep(self.delay)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.stopped.set()
        self.server.close()


@pytest.fixture
def slow_ny5(tmp_path: Path, vm_inventory: Path) -> Iterator[Path]:
    """An inventory whose ny5 jump host is reached through a 120 ms-per-chunk relay on 127.0.0.1.

    Every byte to and from ny5's hosts crosses that link (their channels ride the one jump connection).
    """
    jump = config.host("ny5-jump")
    proxy = DelayProxy((jump.address, 22), 0.12)
    data = yaml.safe_load(vm_inventory.read_text())
    data["datacenters"]["ny5"]["jump"].update(address="127.0.0.1", port=proxy.port)
    for dc in data["datacenters"].values():
        dc["jump"]["ssh_key"] = str((vm_inventory.parent / dc["jump"]["ssh_key"]).resolve())
        for h in dc["hosts"].values():
            h["ssh_key"] = str((vm_inventory.parent / h["ssh_key"]).resolve())
    known = [line for line in config.KNOWN_HOSTS.read_text().splitlines() if line.split(" ", 1)[0] == jump.address]
    extra = [f"[127.0.0.1]:{proxy.port} {line.split(' ', 1)[1]}" for line in known]
    (tmp_path / "known_hosts").write_text(config.KNOWN_HOSTS.read_text() + "\n".join(extra) + "\n")
    data["known_hosts"] = str(tmp_path / "known_hosts")
    path = tmp_path / "slow.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    yield path
    proxy.close()


def test_slow_link_to_one_datacenter(upgrader, vm_host, vm_hosts, slow_ny5, record_property):  # type: ignore[no-untyped-def]
    reliability_mark(
        record_property,
        "slow link to one datacenter's jump host (120 ms added per chunk, userspace relay on loopback)",
        "the upgrade completes, every host verified; exit 0",
    )
    slow = Upgrader(upgrader.state, slow_ny5)
    run = slow.apply(REPO / "playbooks" / "feedhandler-3.1.0.yml")
    assert run.code == 0, run.output
    assert_on(vm_host, vm_hosts, "feedhandler", "3.1.0")
    record_property("observed", f"exit 0 in {run.seconds:.0f} s")


def test_disk_full_during_staging(upgrader, vm_host, vm_hosts, tmp_path, record_property):  # type: ignore[no-untyped-def]
    reliability_mark(
        record_property,
        "disk full on one host during staging (tiny tmpfs under releases/)",
        "staging refused on that host, what this run staged elsewhere removed, nothing live changed; exit 3",
    )
    host = vm_host("ny5-2")
    used = int(host.check_output("sudo du -sk /opt/ordergw/releases").split()[0])
    setup = (
        "set -e; cp -a /opt/ordergw/releases /tmp/rel-copy; mount -t tmpfs -o size=%dk tmpfs "
        "/opt/ordergw/releases; cp -a /tmp/rel-copy/. /opt/ordergw/releases/; rm -rf /tmp/rel-copy"
    )
    assert host.run("sudo sh -c %s", setup % (used + 4)).rc == 0
    try:
        run = upgrader.apply(write(tmp_path / "pb.yml", playbook("ordergw", "5.1.0")))
        assert run.code == 3 and "ny5-2" in run.output, run.output
        assert "disk" in run.output.lower() or "space" in run.output.lower(), run.output
        assert_on(vm_host, vm_hosts, "ordergw", "5.0.0")
        for h in vm_hosts:
            assert component(vm_host(h), "ordergw").staged == ("5.0.0",), h
        assert_unlocked(vm_host, vm_hosts, "ordergw")
    finally:
        host.run("sudo umount /opt/ordergw/releases")
    record_property("observed", "exit 3, staging refused on ny5-2, no release left behind")


def test_app_hangs_on_stop(upgrader, vm_host, vm_hosts, tmp_path, record_property):  # type: ignore[no-untyped-def]
    reliability_mark(
        record_property,
        "vendor app ignores SIGTERM (hangs on stop) during a rollback",
        "stop escalates to SIGKILL after stop_timeout; rollback verified; exit 0",
    )
    pb = write(
        tmp_path / "pb.yml",
        playbook(
            "ordergw",
            "5.1.1+hangstop",
            canary={"bake": "1s"},
            service={"systemd": "ordergw.service", "stop_timeout": "2s"},
        ),
    )
    assert upgrader.apply(pb).code == 0
    back = upgrader(
        "rollback", "ordergw", "-i", str(upgrader.inventory), "--reason", "hang drill", "--yes", "--playbook", str(pb)
    )
    assert back.code == 0, back.output
    assert_on(vm_host, vm_hosts, "ordergw", "5.0.0")
    ends = [e for e in upgrader.journal() if e["event"] == "host-end"]
    steps = [s for e in ends for o in e["ops"] if o["op"] == "rollback" for s in o["steps"]]
    assert "stop (killed)" in steps
    record_property("observed", "stop killed after 2 s on every host; exit 0")


def test_restart_slower_than_its_checks(upgrader, vm_host, vm_hosts, tmp_path, record_property):  # type: ignore[no-untyped-def]
    reliability_mark(
        record_property,
        "restart takes longer than the verify checks allow (8 s warm-up)",
        "verify fails on the canary, rolled back and verified; other hosts untouched; exit 3",
    )
    run = upgrader.apply(write(tmp_path / "pb.yml", playbook("ordergw", "5.1.1+slowstart")))
    assert run.code == 3, run.output
    assert_on(vm_host, vm_hosts, "ordergw", "5.0.0")
    record_property("observed", "exit 3, canary rolled back")


def test_rollback_while_an_apply_runs(upgrader, vm_host, vm_hosts, tmp_path, record_property):  # type: ignore[no-untyped-def]
    reliability_mark(
        record_property,
        "emergency rollback started while an apply is running",
        "the rollback takes the locks over (recorded); the apply starts no new host; all on the old version, verified",
    )
    pb = write(tmp_path / "pb.yml", playbook("ordergw", "5.1.0", canary={"bake": "15s"}))
    proc = upgrader.start_apply(pb)
    upgrader.wait_for(event("bake-begin", "ny5-1"))
    other = Upgrader(tmp_path / "oncall-state", upgrader.inventory)
    back = other(
        "rollback",
        "ordergw",
        "-i",
        str(upgrader.inventory),
        "--reason",
        "drill",
        "--yes",
        "--to",
        "5.0.0",
        "--playbook",
        str(pb),
    )
    assert back.code == 0, back.output
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in (3, 4), out + err
    assert_on(vm_host, vm_hosts, "ordergw", "5.0.0")
    applied = [e["host"] for e in upgrader.journal() if e["event"] == "host-begin"]
    assert applied == ["ny5-1"], "the apply started no host after the handover"
    handovers = [
        o
        for e in other.journal()
        if e["event"] == "host-end"
        for o in e["ops"]
        if o["op"] == "lock" and o.get("previous_holder")
    ]
    assert handovers, "the handover is recorded"
    assert_unlocked(vm_host, vm_hosts, "ordergw")
    record_property("observed", f"apply exit {proc.returncode}, started no new host; rollback exit 0")


def test_hostile_arguments_stay_arguments_on_the_host(upgrader, vm_host, vm_hosts, tmp_path, record_property):  # type: ignore[no-untyped-def]
    reliability_mark(
        record_property,
        "shell metacharacters in a playbook command (migrate argv)",
        "passed as literal arguments; nothing injected on the hosts",
    )
    pb = playbook("ordergw", "5.1.0", canary={"bake": "1s"})
    pb["migrate"] = {
        "command": [
            "/bin/echo",
            "$(touch /tmp/pwned1)",
            "; touch /tmp/pwned2",
            "`touch /tmp/pwned3`",
            "{version}'; touch /tmp/pwned4; echo '",
        ]
    }
    run = upgrader.apply(write(tmp_path / "pb.yml", pb))
    assert run.code == 0, run.output
    for h in vm_hosts:
        assert vm_host(h).run("ls /tmp/pwned1 /tmp/pwned2 /tmp/pwned3 /tmp/pwned4").rc != 0
    migrate = next(o for e in upgrader.journal() if e["event"] == "host-end" for o in e["ops"] if o["op"] == "migrate")
    assert "$(touch /tmp/pwned1)" in migrate["stdout"]
    record_property("observed", "echoed literally; no file created")


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        Hook.received.append({"path": self.path, "body": json.loads(self.rfile.read(length) or b"{}")})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_planted_secret_appears_in_no_artifact(upgrader, vm_host, vm_hosts, tmp_path, vm_inventory, record_property):  # type: ignore[no-untyped-def]
    reliability_mark(
        record_property,
        "a secret (webhook token) planted in the environment",
        "notifications delivered; the secret is in no journal, plan, report, log, output or host file",
    )
    secret = "s3cr3t-TOKEN-4711"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Hook.received.clear()
    data = yaml.safe_load(vm_inventory.read_text())
    for dc in data["datacenters"].values():
        dc["jump"]["ssh_key"] = str((vm_inventory.parent / dc["jump"]["ssh_key"]).resolve())
        for h in dc["hosts"].values():
            h["ssh_key"] = str((vm_inventory.parent / h["ssh_key"]).resolve())
    data["known_hosts"] = str(config.KNOWN_HOSTS)
    data["notify"] = [{"url_env": "UPG_TEST_HOOK", "format": "slack"}]
    inventory = tmp_path / "inv.yml"
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    run_with = Upgrader(upgrader.state, inventory)
    run_with.env["UPG_TEST_HOOK"] = f"http://127.0.0.1:{server.server_port}/hook?token={secret}"
    pb = write(tmp_path / "pb.yml", playbook("ordergw", "5.1.1+crash", canary={"bake": "6s"}))
    try:
        run = run_with.apply(pb)
        plan = run_with("plan", str(pb), "-i", str(inventory), "--live", "--out", str(tmp_path / "plan.json"))
        run_id = run_with.runs()[-1].name
        report = run_with("report", run_id, "--out", str(tmp_path / "report.html"))
    finally:
        server.shutdown()
    assert run.code == 3 and plan.code in (0, 1) and report.code == 0
    kinds = [r["body"].get("text", "") for r in Hook.received]
    assert len(kinds) >= 2 and all(r["path"].endswith(secret) for r in Hook.received)
    haystack = [run.output, plan.output, report.output]
    for path in [*upgrader.state.rglob("*"), tmp_path / "plan.json", tmp_path / "report.html"]:
        if path.is_file():
            haystack.append(path.read_text(errors="replace"))
    for h in vm_hosts:
        haystack.append(vm_host(h).run("sudo cat /var/lib/upgrader/ordergw/journal.jsonl").stdout)
    assert not [text for text in haystack if secret in text]
    record_property("observed", f"{len(Hook.received)} notifications sent; secret found nowhere")


def test_state_files_have_safe_permissions(upgrader, vm_host, record_property):  # type: ignore[no-untyped-def]
    reliability_mark(
        record_property,
        "journal, audit log and lock files",
        "0600 files in 0700 directories, on the controller and on the hosts",
    )
    assert upgrader.apply(REPO / "playbooks" / "feedhandler-3.1.0.yml").code == 0
    for path in upgrader.state.rglob("*"):
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    modes = vm_host("ny5-1").check_output(
        "sudo stat -c '%a %n' /var/lib/upgrader /var/lib/upgrader/feedhandler "
        "/var/lib/upgrader/feedhandler/journal.jsonl"
    )
    assert [m.split()[0] for m in modes.splitlines()] == ["700", "700", "600"], modes
    record_property("observed", "as required")


def reliability_mark(record_property, scenario: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    """Names the scenario and its expected outcome for docs/reliability.md."""
    record_property("scenario", scenario)
    record_property("expected", expected)
