"""`apply --engine temporal` on the lab: the session's dev server, a control worker and workers per datacenter.

Each test starts its own workers as `upgrader worker` processes (two for ny5, one for ch2, one control
worker writing the journal into the test's state directory) and stops them by PID.  What is on the
hosts afterwards is read with testinfra (hoststate.assert_on), as in the other VM tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import config
from tests.temporal_server import DevServer
from tests.vm.hoststate import assert_on
from tests.vm.upgrader_cli import Upgrader, kill9, playbook, write

ENGINE = ("--engine", "temporal")


class Workers:
    """`upgrader worker` processes for one test; logs in its tmp dir; each stopped by its own PID."""

    def __init__(self, upgrader: Upgrader, logs: Path) -> None:
        self.upgrader = upgrader
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *serve: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"worker-{name}.log").open("wb")
        proc = subprocess.Popen(
            self.upgrader.argv("worker", "-i", str(self.upgrader.inventory), *serve),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.upgrader.env,
            cwd=config.REPO,
        )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"worker-{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def upgrader(tmp_path: Path, vm_inventory: Path, reset_hosts: None, temporal_server: DevServer) -> Upgrader:
    up = Upgrader(tmp_path / "state", vm_inventory)
    up.env["UPGRADER_TEMPORAL_ADDRESS"] = temporal_server.address
    up.env["UPGRADER_PLAN_KEY"] = "vm-test-plan-key-0123456789abcdef"  # the controller signs, the workers check
    return up


@pytest.fixture
def workers(upgrader: Upgrader, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(upgrader, tmp_path)
    running.start("control", "--control")
    running.start("ny5-a", "--datacenter", "ny5")
    running.start("ny5-b", "--datacenter", "ny5")
    running.start("ch2", "--datacenter", "ch2")
    yield running
    running.stop()


def quick(tmp_path: Path, name: str = "pb.yml", **extra: Any) -> Path:
    extra.setdefault("canary", {"bake": "1s", "bake_interval": "500ms"})
    return write(tmp_path / name, playbook("feedhandler", "3.1.0", **extra))


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def run_end(upgrader: Upgrader, timeout: float = 300) -> dict[str, Any]:
    entries = upgrader.wait_for(lambda es: any(e["event"] == "run-end" for e in es), timeout=timeout)
    return entries[-1]


def events(upgrader: Upgrader) -> list[str]:
    return [e["event"] for e in upgrader.journal()]


def test_apply_through_two_datacenter_workers(upgrader, workers, tmp_path, vm_host, vm_hosts):  # type: ignore[no-untyped-def]
    result = upgrader.apply(quick(tmp_path), *ENGINE)
    assert result.code == 0, result.output
    assert_on(vm_host, vm_hosts, "feedhandler", "3.1.0")
    entries = upgrader.journal()
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert entries[0]["engine"] == "temporal" and entries[-1]["status"] == "succeeded"
    assert {e["host"] for e in entries if e["event"] == "host-end" and e["ok"]} == set(vm_hosts)
    # both datacenters' queues were served by their own workers
    assert "ny5-" in workers.log("ny5-a") + workers.log("ny5-b") and "ch2-" in workers.log("ch2")
    assert "ny5-" not in workers.log("ch2")
    run = upgrader.runs()[-1].name
    for command in (("show", run), ("report", run), ("runs",), ("status", run)):
        shown = upgrader(*command)
        assert shown.code == 0, (command, shown.output)
    assert "succeeded" in upgrader("status", run).stdout
    # and from the server, as any controller would find it (search attributes; README: Engines)
    for _ in range(50):
        listed = json.loads(upgrader("runs", *ENGINE, "--format", "json").stdout)
        mine = [r for r in listed if r["run"] == run]
        if mine and mine[0]["status"] == "succeeded":
            break
        time.sleep(0.2)
    assert mine and (mine[0]["component"], mine[0]["phase"]) == ("feedhandler", "ended"), listed
    assert mine[0]["datacenters"] == ["ch2", "ny5"] and mine[0]["version"] == "3.1.0"


@pytest.mark.reliability
def test_promote_at_a_manual_gate(upgrader, workers, tmp_path, vm_host, vm_hosts, record_property):  # type: ignore[no-untyped-def]
    pb = quick(
        tmp_path,
        canary={"bake": "1s", "bake_interval": "500ms", "promote": "manual", "promote_timeout": "180s"},
        rollback="run",
    )
    proc = upgrader.start_apply(pb, *ENGINE)
    promoted = []
    for gate in ("promote-ny5", "promote-ch2"):
        upgrader.wait_for(lambda es, g=gate: any(e["event"] == "gate-wait" and e["gate"] == g for e in es), 240)
        run = upgrader.runs()[-1].name
        said = upgrader("promote", run, "--reason", f"{gate} normal")
        assert said.code == 0, said.output
        promoted.append(gate)
    code, output = finish(proc)
    assert code == 0, output[-2000:]
    assert_on(vm_host, vm_hosts, "feedhandler", "3.1.0")
    ends = [(e["gate"], e["outcome"]) for e in upgrader.journal() if e["event"] == "gate-end"]
    assert ends == [(g, "promoted") for g in promoted]
    assert not (upgrader.runs()[-1] / "decisions").exists()  # a signal, not a decision file
    record_property("scenario", "temporal: promote at a manual gate (signal)")
    record_property("expected", "the workflow waits at each gate (a timer); `promote` signals it on; exit 0")
    record_property("observed", f"exit {code}; gates {ends}; all {len(vm_hosts)} hosts on 3.1.0")


@pytest.mark.reliability
def test_abort_during_a_wave(upgrader, workers, tmp_path, vm_host, vm_hosts, record_property):  # type: ignore[no-untyped-def]
    pb = quick(tmp_path, canary={"hosts": 0}, rollback="run", rollout={"batch": 1, "max_in_flight_per_datacenter": 1})
    proc = upgrader.start_apply(pb, *ENGINE)
    upgrader.wait_for(lambda es: any(e["event"] == "host-end" and e.get("ok") for e in es), timeout=240)
    run = upgrader.runs()[-1].name
    said = upgrader("abort", run, "--reason", "INC-7 stop now")
    assert said.code == 0, said.output
    code, output = finish(proc)
    entries = upgrader.journal()
    started = [e["host"] for e in entries if e["event"] == "host-begin"]
    assert code == 3, output[-2000:]
    assert entries[-1]["status"] == "aborted" and "INC-7" in entries[-1]["message"]
    assert len(started) < len(vm_hosts)
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    record_property("scenario", "temporal: abort during a wave (signal)")
    record_property("expected", "no new host starts; the run's changes are rolled back per the policy; exit 3")
    record_property("observed", f"exit {code}; {len(started)} of {len(vm_hosts)} hosts started; all on 3.0.0")


@pytest.mark.reliability
def test_sigkill_of_the_client_does_not_stop_the_run(upgrader, workers, tmp_path, vm_host, vm_hosts, record_property):  # type: ignore[no-untyped-def]
    proc = upgrader.start_apply(quick(tmp_path), *ENGINE)
    upgrader.wait_for(lambda es: any(e["event"] == "host-begin" for e in es), timeout=240)
    kill9(proc)
    end = run_end(upgrader)
    run = upgrader.runs()[-1].name
    status = upgrader("status", run)
    watched = upgrader("watch", run, "--log-format", "plain")
    assert end["status"] == "succeeded" and status.code == 0 and "succeeded" in status.stdout
    assert watched.code == 0, watched.output
    assert_on(vm_host, vm_hosts, "feedhandler", "3.1.0")
    record_property("scenario", "temporal: the client is SIGKILLed mid-run")
    record_property("expected", "the workflow finishes the run; `status RUN` shows it; `watch` reattaches")
    record_property(
        "observed",
        f"client killed after the first host-begin; run {end['status']} "
        f"(exit {end['exit_code']}); status exit {status.code}, watch exit {watched.code}",
    )


@pytest.mark.reliability
def test_a_second_controller_is_refused(upgrader, workers, tmp_path, vm_inventory, record_property):  # type: ignore[no-untyped-def]
    pb = quick(
        tmp_path, canary={"bake": "1s", "bake_interval": "500ms", "promote": "manual", "promote_timeout": "180s"}
    )
    first = upgrader.start_apply(pb, *ENGINE)
    upgrader.wait_for(lambda es: any(e["event"] == "gate-wait" for e in es), timeout=240)
    other = Upgrader(tmp_path / "other-controller", vm_inventory)  # another desk: its own state directory
    other.env["UPGRADER_TEMPORAL_ADDRESS"] = upgrader.env["UPGRADER_TEMPORAL_ADDRESS"]
    other.env["UPGRADER_PLAN_KEY"] = upgrader.env["UPGRADER_PLAN_KEY"]  # the desk's key: the workers' own
    second = other.apply(pb, *ENGINE)
    run = upgrader.runs()[-1].name
    assert upgrader("abort", run, "--reason", "test over").code == 0
    code, _ = finish(first)
    errors = [line for line in second.stderr.splitlines() if line.startswith("error")]
    assert second.code == 1 and len(errors) == 1 and "another controller" in errors[0], second.output
    assert run in errors[0]
    record_property("scenario", "temporal: two controllers start the same upgrade")
    record_property("expected", "the second is refused (one line, exit 1): the workflow id is the lock")
    record_property("observed", f"second exit {second.code}: {errors[0][:160]}; first ended with exit {code}")


def _replace(workers: Workers, new: str, old: str, *serve: str) -> tuple[int, float]:
    """A new worker polls, then the old one is stopped as systemd stops it (SIGTERM): its exit code and seconds."""
    workers.start(new, *serve)
    deadline = time.monotonic() + 60
    while "polling" not in workers.log(new):
        assert workers.procs[new].poll() is None and time.monotonic() < deadline, workers.log(new)
        time.sleep(0.1)
    started = time.monotonic()
    os.kill(workers.procs[old].pid, signal.SIGTERM)
    return workers.procs[old].wait(timeout=60), time.monotonic() - started


@pytest.mark.reliability
def test_a_rolling_upgrade_of_the_workers_mid_run(upgrader, workers, tmp_path, vm_host, vm_hosts, record_property):  # type: ignore[no-untyped-def]
    pb = quick(
        tmp_path,
        canary={"bake": "1s", "bake_interval": "500ms", "promote": "manual", "promote_timeout": "300s"},
        rollback="run",
    )
    proc = upgrader.start_apply(pb, *ENGINE)
    upgrader.wait_for(lambda es: any(e["event"] == "gate-wait" for e in es), 240)
    stopped = {
        old: _replace(workers, new, old, "--datacenter", dc)
        for new, old, dc in (("ny5-c", "ny5-a", "ny5"), ("ny5-d", "ny5-b", "ny5"), ("ch2-b", "ch2", "ch2"))
    }
    stopped["control"] = _replace(workers, "control-2", "control", "--control")
    promoted = []
    for gate in ("promote-ny5", "promote-ch2"):
        upgrader.wait_for(lambda es, g=gate: any(e["event"] == "gate-wait" and e["gate"] == g for e in es), 240)
        said = upgrader("promote", upgrader.runs()[-1].name, "--reason", f"{gate} after the rolling upgrade")
        assert said.code == 0, said.output
        promoted.append(gate)
    code, output = finish(proc)
    entries = upgrader.journal()
    ended = [e["host"] for e in entries if e["event"] == "host-end" and e["ok"]]
    record_property(
        "scenario", "temporal: every worker replaced (SIGTERM, new processes) while the run waits at a gate"
    )
    record_property("expected", "the run carries on under the new workers: promoted, exit 0, each host upgraded once")
    record_property(
        "observed",
        f"exit {code}; old workers ended "
        + ", ".join(f"{w} exit {c} in {t:.1f}s" for w, (c, t) in stopped.items())
        + f"; gates {promoted}; host-end ok {len(ended)} for {len(set(ended))} hosts; "
        f"recover records {sum(1 for e in entries if e['event'] == 'recover')}",
    )
    assert code == 0, output[-2000:]
    assert all(c == 0 for c, _ in stopped.values()), stopped
    assert sorted(ended) == sorted(vm_hosts) and not [e for e in entries if e["event"] == "recover"]
    assert_on(vm_host, vm_hosts, "feedhandler", "3.1.0")


def _running(workers: Workers, host: str) -> Callable[[], str | None]:
    def which() -> str | None:
        for name in ("ny5-a", "ny5-b"):
            if f": upgrade {host} " in workers.log(name):
                return name
        return None

    return which


@pytest.mark.reliability
def test_sigkill_of_a_worker_during_a_wave(upgrader, workers, tmp_path, vm_host, vm_hosts, record_property):  # type: ignore[no-untyped-def]
    pb = quick(tmp_path, canary={"hosts": 0}, rollout={"batch": 1, "max_in_flight_per_datacenter": 1})
    proc = upgrader.start_apply(pb, *ENGINE)
    victim = None
    deadline = time.monotonic() + 240
    while victim is None and time.monotonic() < deadline:
        victim = _running(workers, "ny5-1")()
        time.sleep(0.05)
    assert victim is not None, "no ny5 worker picked up ny5-1"
    os.kill(workers.procs[victim].pid, signal.SIGKILL)
    code, output = finish(proc)
    entries = upgrader.journal()
    recovered = [e for e in entries if e["event"] == "recover"]
    assert code == 0, output[-2000:]
    assert_on(vm_host, vm_hosts, "feedhandler", "3.1.0")
    survivor = "ny5-b" if victim == "ny5-a" else "ny5-a"
    assert "ny5-1" in workers.log(survivor)
    record_property("scenario", "temporal: a datacenter's worker is SIGKILLed mid-program")
    record_property(
        "expected",
        "its heartbeat stops; the host is put back and verified by the other worker, "
        "then upgraded again from the start; nothing half-done",
    )
    record_property(
        "observed",
        f"killed {victim} while ny5-1 was upgrading; {len(recovered)} recover record(s) "
        f"({recovered[0]['reason'] if recovered else 'the program had finished'}); exit "
        f"{code}; all {len(vm_hosts)} hosts on 3.1.0",
    )


@pytest.mark.reliability
def test_the_server_restarts_mid_bake(upgrader, workers, tmp_path, vm_host, vm_hosts, temporal_server, record_property):  # type: ignore[no-untyped-def]
    proc = upgrader.start_apply(quick(tmp_path, canary={"bake": "8s", "bake_interval": "1s"}), *ENGINE)
    upgrader.wait_for(lambda es: any(e["event"] == "bake-begin" for e in es), timeout=240)
    started = time.monotonic()
    temporal_server.restart()
    down = time.monotonic() - started
    code, output = finish(proc)
    entries = upgrader.journal()
    bakes = [e for e in entries if e["event"] == "bake-end"]
    assert code == 0, output[-2000:]
    assert all(b["ok"] for b in bakes) and len(bakes) == 2
    assert_on(vm_host, vm_hosts, "feedhandler", "3.1.0")
    record_property("scenario", "temporal: the dev server restarts mid-bake (its database kept)")
    record_property("expected", "the bake's timer and the run resume from the server's history; exit 0")
    record_property(
        "observed",
        f"server down and back in {down:.1f}s during ny5's bake; exit {code}; "
        f"{len(bakes)} bakes ok; all hosts on 3.1.0",
    )


@pytest.mark.reliability
def test_rollback_first_aborts_the_running_workflow(upgrader, workers, tmp_path, vm_host, vm_hosts, record_property):  # type: ignore[no-untyped-def]
    pb = quick(
        tmp_path, canary={"bake": "1s", "bake_interval": "500ms", "promote": "manual", "promote_timeout": "180s"}
    )
    proc = upgrader.start_apply(pb, *ENGINE)
    upgrader.wait_for(lambda es: any(e["event"] == "gate-wait" for e in es), timeout=240)
    run_dir = upgrader.runs()[-1]
    # --to the release the run started from: whether the aborted run or the rollback put a host back first,
    # every host must end there (one already there is left as it is).
    back = upgrader(
        "rollback",
        "feedhandler",
        "-i",
        str(upgrader.inventory),
        "--reason",
        "INC-42 rejects",
        "--to",
        "3.0.0",
        "--playbook",
        str(pb),
        "--yes",
        "--log-format",
        "plain",
    )
    code, output = finish(proc)
    applied = upgrader.journal(run_dir)
    rollback = next(upgrader.journal(r) for r in upgrader.runs() if r != run_dir)
    assert back.code == 0, back.output
    aborts = [e["reason"] for e in applied if e["event"] == "abort"]
    assert aborts and "emergency rollback: INC-42 rejects" in aborts[0]
    assert any(e["event"] == "aborted-runs" and e["runs"] == [run_dir.name] for e in rollback)
    assert code != 0 and applied[-1]["status"] == "aborted", output[-1500:]
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    record_property("scenario", "temporal: emergency rollback while a Temporal run waits at its gate")
    record_property(
        "expected",
        "rollback first aborts the workflow (recorded in both journals and the audit log), then puts the hosts back",
    )
    record_property(
        "observed",
        f"rollback exit {back.code}; workflow ended {applied[-1]['status']} (exit {code}) "
        f"with abort '{aborts[0]}'; all hosts on 3.0.0",
    )


def test_worker_needs_something_to_serve(upgrader) -> None:  # type: ignore[no-untyped-def]
    result = upgrader("worker", "-i", str(upgrader.inventory))
    assert result.code == 1 and "--datacenter" in result.stderr
