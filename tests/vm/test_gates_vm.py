"""Manual gates on the lab: promote, abort at a gate and mid-wave, timeout, a canary degrading while it waits."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from lab import config, lxc
from tests.vm.hoststate import assert_on, assert_unlocked, component
from tests.vm.upgrader_cli import Upgrader, playbook, write

pytestmark = pytest.mark.reliability


def gated(tmp_path: Path, **canary: object) -> Path:
    return write(
        tmp_path / "pb.yml",
        playbook(
            "feedhandler",
            "3.1.0",
            rollback="run",
            canary={"bake": "1s", "promote": "manual", "promote_timeout": "120s", **canary},
        ),
    )


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> int:
    proc.communicate(timeout=timeout)
    return proc.returncode


def waiting(upgrader: Upgrader) -> tuple[str, dict[str, object]]:
    entries = upgrader.wait_for(lambda es: any(e["event"] == "gate-wait" for e in es), timeout=180)
    return upgrader.runs()[-1].name, next(e for e in entries if e["event"] == "gate-wait")


def test_promote_at_the_canary_gate(upgrader, tmp_path, vm_host, vm_hosts, record_property):  # type: ignore[no-untyped-def]
    proc = upgrader.start_apply(gated(tmp_path))
    run, wait = waiting(upgrader)
    assert wait["gate"] == "promote-ny5" and wait["watch"] == ["ny5-1"]
    assert upgrader("promote", run, "--reason", "fills normal").code == 0
    # ch2's canary has a gate of its own: the first promote does not carry the run past it.
    upgrader.wait_for(lambda es: any(e["event"] == "gate-wait" and e["gate"] == "promote-ch2" for e in es))
    assert upgrader("promote", run, "--reason", "ch2 normal too").code == 0
    code = finish(proc)
    assert code == 0
    assert_on(vm_host, vm_hosts, "feedhandler", "3.1.0")
    ends = [e for e in upgrader.journal() if e["event"] == "gate-end"]
    assert ends[0]["outcome"] == "promoted" and ends[0]["decision"]["operator"].startswith("pytest@")
    audit = [json.loads(line)["action"] for line in (upgrader.state / "audit.log").read_text().splitlines()]
    assert "promote" in audit
    record_property("scenario", "manual promote at the canary gate")
    record_property("expected", "the run waits at the gate; `promote` lets it finish; recorded with the operator")
    record_property(
        "observed",
        f"exit {code}; gates {[(e['gate'], e['outcome']) for e in ends]}; all {len(vm_hosts)} hosts on 3.1.0",
    )


def test_abort_at_the_gate_rolls_back(upgrader, tmp_path, vm_host, vm_hosts, record_property):  # type: ignore[no-untyped-def]
    proc = upgrader.start_apply(gated(tmp_path))
    run, _ = waiting(upgrader)
    assert upgrader("abort", run, "--reason", "INC-7 rejects").code == 0
    code = finish(proc)
    assert code == 3
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    end = upgrader.journal()[-1]
    assert end["status"] == "aborted" and "INC-7 rejects" in end["message"]
    record_property("scenario", "abort at a manual gate")
    record_property("expected", "no further host starts; what the run changed is rolled back; exit 3")
    record_property("observed", f"exit {code}; status {end['status']}; all hosts back on 3.0.0")


def test_a_canary_that_degrades_while_waiting_is_rolled_back(upgrader, tmp_path, vm_host, vm_hosts, record_property):  # type: ignore[no-untyped-def]
    proc = upgrader.start_apply(gated(tmp_path))
    waiting(upgrader)
    lxc.attach(config.host("ny5-1").container, "systemctl kill --signal=SIGKILL feedhandler.service")
    code = finish(proc)
    assert code == 3
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    end = next(e for e in upgrader.journal() if e["event"] == "gate-end")
    assert end["outcome"] == "degraded" and "ny5-1" in end["detail"]
    record_property("scenario", "the canary dies while the run waits at its gate")
    record_property("expected", "its checks keep running at the gate: the failure is caught, everything rolled back")
    record_property("observed", f"exit {code}; gate {end['outcome']} after {end['waited']} s ({end['detail'][:80]})")


def test_no_decision_in_time_holds(upgrader, tmp_path, vm_host, record_property):  # type: ignore[no-untyped-def]
    proc = upgrader.start_apply(gated(tmp_path, promote_timeout="4s", on_timeout="hold"))
    code = finish(proc)
    assert code == 4
    entries = upgrader.journal()
    end = next(e for e in entries if e["event"] == "gate-end")
    assert end["outcome"] == "timed-out" and any(e["event"] == "hold" for e in entries)
    record_property("scenario", "nobody decides at a manual gate (on_timeout: hold)")
    record_property("expected", "the run holds after the timeout for a human: exit 4, nothing rolled back")
    record_property(
        "observed", f"exit {code}; gate {end['outcome']} after {end['waited']} s; status {entries[-1]['status']}"
    )


def test_abort_during_a_wave_starts_no_new_host(upgrader, tmp_path, vm_host, vm_hosts, record_property):  # type: ignore[no-untyped-def]
    pb = write(
        tmp_path / "pb.yml",
        playbook(
            "feedhandler",
            "3.1.0",
            rollback="run",
            canary={"hosts": 0},
            rollout={"batch": 1, "max_in_flight_per_datacenter": 1},
        ),
    )
    proc = upgrader.start_apply(pb)
    upgrader.wait_for(lambda es: any(e["event"] == "host-end" and e.get("ok") for e in es), timeout=180)
    run = upgrader.runs()[-1].name
    assert upgrader("abort", run, "--reason", "stop now").code == 0
    code = finish(proc)
    entries = upgrader.journal()
    started = [e["host"] for e in entries if e["event"] == "host-begin"]
    assert code == 3 and len(started) < len(vm_hosts)
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    record_property("scenario", "abort during a wave")
    record_property("expected", "no new host starts after the abort; the run's changes are rolled back; exit 3")
    record_property("observed", f"exit {code}; {len(started)} of {len(vm_hosts)} hosts started; all on 3.0.0")


def test_abort_at_the_gate_puts_the_canary_back_whatever_the_policy(
    upgrader, tmp_path, vm_host, vm_hosts, record_property
):  # type: ignore[no-untyped-def]
    """Policy 'host' (a failure puts back only the failed host): an abort still puts back every host changed."""
    pb = write(
        tmp_path / "pb.yml",
        playbook(
            "feedhandler",
            "3.1.0",
            rollback="host",
            canary={"bake": "1s", "promote": "manual", "promote_timeout": "120s"},
        ),
    )
    proc = upgrader.start_apply(pb)
    run, _ = waiting(upgrader)
    assert component(vm_host("ny5-1"), "feedhandler").current == "3.1.0"  # the canary waits on the new release
    said = upgrader("abort", run, "--reason", "INC-24 at the gate", "--wait", "30")
    code = finish(proc)
    assert said.code == 0 and "took the abort" in said.stdout, said.output
    assert code == 3, code
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    assert_unlocked(vm_host, vm_hosts, "feedhandler")
    end = upgrader.journal()[-1]
    assert end["status"] == "aborted" and end["hosts"]["ny5-1"]["version"] == "3.0.0"
    record_property("scenario", "abort while the canary waits at its promote gate (policy 'host')")
    record_property("expected", "every host the run changed back on its starting release, verified; exit 3; no lock")
    record_property(
        "observed",
        f"abort exit {said.code} in {said.seconds:.1f} s; run exit {code}; "
        f"canary 3.1.0 -> 3.0.0; all {len(vm_hosts)} hosts on 3.0.0 and unlocked",
    )


def test_ctrl_c_during_the_bake_ends_it_at_once(upgrader, tmp_path, vm_host, vm_hosts, record_property):  # type: ignore[no-untyped-def]
    pb = write(
        tmp_path / "pb.yml",
        playbook("feedhandler", "3.1.0", rollback="host", canary={"bake": "120s", "bake_interval": "2s"}),
    )
    proc = upgrader.start_apply(pb)
    upgrader.wait_for(lambda es: any(e["event"] == "bake-begin" for e in es), timeout=180)
    time.sleep(3)
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    ended = time.time() - sent
    entries = upgrader.journal()
    bake_end = next(e for e in entries if e["event"] == "bake-end")
    bake_s = datetime.fromisoformat(bake_end["at"]).timestamp() - sent
    halt = next(e for e in entries if e["event"] == "halt" and e.get("signal"))
    assert proc.returncode == 5, (proc.returncode, err[-500:])
    assert bake_s < 1.5 and bake_end.get("cut"), bake_s
    assert (halt["signal"], halt["hard"], halt["resumable"]) == ("SIGINT", False, True)
    assert "SIGINT: stopping" in err
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    assert_unlocked(vm_host, vm_hosts, "feedhandler")
    assert entries[-1]["resumable"] is True
    # resume's view (not confirmed, so nothing runs): halted, every host named on its version
    resume = upgrader("resume", upgrader.runs()[-1].name, timeout=60)
    assert "it halted" in resume.stdout and "already finished" not in resume.output, resume.output
    record_property("scenario", "Ctrl-C (SIGINT) during a 120 s canary bake")
    record_property(
        "expected",
        "the bake ends within a second; the canary is put back, verified; the run ends resumable (exit 5); no lock",
    )
    record_property(
        "observed",
        f"bake-end {bake_s:.2f} s after SIGINT, exit {proc.returncode} "
        f"{ended:.1f} s after it; halt resumable; all {len(vm_hosts)} hosts on 3.0.0, "
        "unlocked; resume not refused as finished",
    )


def test_a_promote_and_an_abort_at_once_from_two_desks(upgrader, tmp_path, vm_host, vm_hosts, record_property):  # type: ignore[no-untyped-def]
    proc = upgrader.start_apply(gated(tmp_path))
    run, _ = waiting(upgrader)
    desks = {
        kind: subprocess.Popen(
            upgrader.argv(kind, run, "--reason", f"{kind} from a desk", "--wait", "30"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=upgrader.env,
            cwd=config.REPO,
            stdin=subprocess.DEVNULL,
        )
        for kind in ("promote", "abort")
    }
    said = {kind: (p.wait(60), "".join(p.communicate()).strip().splitlines()[-1]) for kind, p in desks.items()}
    code = finish(proc)
    entries = upgrader.journal()
    gate_end = next(e for e in entries if e["event"] == "gate-end")
    assert said["abort"][0] == 0, said
    assert (said["promote"][0] == 0) == (gate_end["outcome"] == "promoted"), (said, gate_end)
    assert code == 3 and entries[-1]["status"] == "aborted", code
    assert_on(vm_host, vm_hosts, "feedhandler", "3.0.0")
    assert_unlocked(vm_host, vm_hosts, "feedhandler")
    record_property("scenario", "a promote and an abort of the same run at the same moment, from two processes")
    record_property(
        "expected",
        "one consistent outcome (aborted, every host back, no lock); each command's exit "
        "code says what became of its decision",
    )
    record_property(
        "observed",
        f"gate {gate_end['outcome']}; promote exit {said['promote'][0]} "
        f"({said['promote'][1][:60]!r}); abort exit {said['abort'][0]}; run exit {code}; "
        f"all {len(vm_hosts)} hosts on 3.0.0, unlocked",
    )
