"""Rollback and apply never interleave on a host (issue 13 §4), with real agent processes on real files.

Agent A runs an apply-like program whose migrate is slow; agent B, started while A is inside it,
runs the emergency rollback's program (lock handover, rollback, lock release).  B either waits for A
to end its current operation (A then stops before its next one) or, past ``takeover_wait``, kills A
and what A started.  The host journal (STATE redirected to a temp dir) records the order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.unit import agent_code
from upgrader import agent as agent_pkg

pytestmark = pytest.mark.reliability("rollback started while an apply is inside a slow migrate")

AGENT = agent_code.AGENT  # the program a host is sent, in a file

# The agent's program loaded under another name (so its __main__ guard stays quiet), STATE pointed at the
# test's directory, then serving as on a host: the program comes on stdin, which then closes.  The command
# line names the program's file (upgrader-agent-<digest>.py), as /proc shows it.
WRAPPER = (
    "import sys,types;"
    "m=types.ModuleType('agent_under_test');"
    "exec(compile(open(sys.argv[1]).read(),sys.argv[1],'exec'),m.__dict__);"
    "m.STATE=sys.argv[2];sys.exit(m.main())"
)


def start(program: dict[str, Any], state: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", WRAPPER, str(AGENT), str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # its own process group: a kill cannot reach pytest
    assert proc.stdin is not None
    proc.stdin.write(agent_pkg.pack_program(program) + "\n")
    proc.stdin.flush()  # finish() closes stdin: the agent ends after this program, as when the controller hangs up
    return proc


@pytest.fixture
def host(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "opt" / "app"
    for v in ("1.0", "2.0"):
        (root / "releases" / v / ".upgrader").mkdir(parents=True, mode=0o700)
    (root / "current").symlink_to("releases/1.0")
    (root / "releases" / "2.0" / ".upgrader" / "previous.json").write_text('{"version": "1.0"}')
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "app.conf").write_text("schema 1\n")
    return {"root": root, "state": tmp_path / "state", "conf": etc / "app.conf", "tmp": tmp_path}


SERVICE = {"start": ["true"], "stop": ["true"], "status": ["true"], "start_timeout": 5, "stop_timeout": 5}


def apply_program(host: dict[str, Path], seconds: float) -> dict[str, Any]:
    conf = host["conf"]
    return {
        "component": "app",
        "run": "APPLY",
        "root": str(host["root"]),
        "ops": [
            {"op": "lock", "mode": "acquire", "operator": "a", "step": "lock-acquire"},
            {"op": "stop", "step": "h/stop", "service": SERVICE},
            {"op": "switch", "step": "h/switch", "version": "2.0"},
            {
                "op": "migrate",
                "step": "h/migrate",
                "version": "2.0",
                "from": "1.0",
                "files": [str(conf)],
                "argv": ["sh", "-c", f"sleep {seconds}; echo schema 2 > {conf}"],
                "timeout": 120,
            },
            {"op": "start", "step": "h/start", "service": SERVICE, "logs": []},
            {"op": "verify", "step": "h/verify", "service": SERVICE, "checks": []},
        ],
    }


def rollback_program(host: dict[str, Path], wait: float) -> dict[str, Any]:
    ops = [
        {**agent_pkg_lock("handover"), "takeover_wait": wait},
        {"op": "rollback", "step": "rollback", "to": "1.0", "service": SERVICE, "checks": []},
        agent_pkg_lock("release"),
    ]
    return {"component": "app", "run": "ROLLBACK", "root": str(host["root"]), "ops": ops}


def agent_pkg_lock(mode: str) -> dict[str, Any]:
    return {
        "op": "lock",
        "mode": mode,
        "operator": "oncall",
        "plan": None,
        "kind": "rollback",
        "reason": "drill",
        "step": f"lock-{mode}",
    }


def journal(host: dict[str, Path]) -> list[dict[str, Any]]:
    path = host["state"] / "app" / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_for_begin(host: dict[str, Path], step: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = host["state"] / "app" / "journal.jsonl"
        if path.exists() and any(r.get("step") == step and r.get("phase") == "begin" for r in journal(host)):
            return
        time.sleep(0.02)
    raise AssertionError(f"{step} never began")


def where(records: list[dict[str, Any]], **match: Any) -> int:
    return next(i for i, r in enumerate(records) if all(r.get(k) == v for k, v in match.items()))


def finish(proc: subprocess.Popen[str]) -> tuple[int, list[dict[str, Any]]]:
    """(the program's status, its results): the status its END line gives, or how the process died."""
    out, _ = proc.communicate(timeout=60)
    end = [line for line in out.splitlines() if line.startswith(agent_pkg.END)]
    return (int(end[0][len(agent_pkg.END) :]) if end else proc.returncode), agent_pkg.parse_output(out)


def test_a_rollback_waits_for_the_migrate_in_flight_and_the_apply_stops_there(host, record_property) -> None:  # type: ignore[no-untyped-def]
    a = start(apply_program(host, 2.0), host["state"])
    try:
        wait_for_begin(host, "h/migrate")
        b = start(rollback_program(host, 30), host["state"])
        code_b, out_b = finish(b)
        code_a, out_a = finish(a)
    finally:
        a.kill()
    assert code_b == 0, out_b
    assert code_a == 1 and out_a[-1]["op"] == "lock" and "taken over by rollback run ROLLBACK" in out_a[-1]["error"]
    assert out_a[-1]["error"].endswith("before h/start") and out_a[-1]["stopped"] == "start"
    assert out_a[-1]["handed_over"] is True and [o["op"] for o in out_a] == [
        "lock",
        "stop",
        "switch",
        "migrate",
        "lock",
    ]
    records = journal(host)
    took = records[where(records, event="takeover")]
    assert took["how"] == "waited" and 0.5 < took["seconds"] < 30 and took["holder"]["run"] == "APPLY"
    order = [
        where(records, step="h/migrate", phase="end"),
        where(records, event="taken-over"),
        where(records, event="takeover"),
        where(records, step="lock-handover", phase="begin"),
        where(records, step="rollback", phase="end"),
    ]
    assert order == sorted(order), records
    assert not [r for r in records if r.get("step") in ("h/start", "h/verify")], "the apply stopped between ops"
    assert os.readlink(host["root"] / "current") == "releases/1.0"
    assert host["conf"].read_text() == "schema 1\n", "the migrated config was restored"
    assert out_b[0]["takeover"]["how"] == "waited"
    stopped = out_a[-1]["error"].rsplit(")", 1)[-1].strip()
    record_property(
        "observed",
        f"rollback exit {code_b}, {took['how']} {took['seconds']:.1f} s for the migrate; apply exit {code_a} after "
        f"{[o['op'] for o in out_a]} (stopped {stopped}); current -> {os.readlink(host['root'] / 'current')}, "
        f"app.conf {host['conf'].read_text()!r}",
    )


def test_past_the_bound_the_rollback_kills_the_apply_and_what_it_started(host, record_property) -> None:  # type: ignore[no-untyped-def]
    a = start(apply_program(host, 60), host["state"])
    try:
        wait_for_begin(host, "h/migrate")
        time.sleep(0.2)  # the migration's shell and sleep are running
        b = start(rollback_program(host, 0.5), host["state"])
        code_b, out_b = finish(b)
        code_a, _ = finish(a)
    finally:
        a.kill()
    assert code_b == 0, out_b
    assert code_a == -9, "SIGKILLed"
    records = journal(host)
    took = records[where(records, event="takeover")]
    assert took["how"] == "killed" and 0.5 <= took["seconds"] < 10 and took["holder"]["pid"] == a.pid
    assert not [r for r in records if r.get("step") == "h/migrate" and r.get("phase") == "end"]
    assert where(records, event="takeover") < where(records, step="rollback", phase="begin")
    migration = _running(f"sleep 60; echo schema 2 > {host['conf']}")
    assert not migration, "the migration was killed too"
    assert os.readlink(host["root"] / "current") == "releases/1.0"
    assert host["conf"].read_text() == "schema 1\n"
    record_property(
        "observed",
        f"rollback exit {code_b}, {took['how']} the apply after {took['seconds']:.1f} s (wait 0.5 s); apply exit "
        f"{code_a}; migration still running: {migration}; current -> {os.readlink(host['root'] / 'current')}",
    )


def _running(needle: str) -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if needle in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode():
                return True
        except OSError:
            continue
    return False


def test_a_program_that_is_not_a_takeover_waits_briefly_then_fails_as_a_lock_failure(
    host, monkeypatch, record_property
) -> None:  # type: ignore[no-untyped-def]
    a = start(apply_program(host, 60), host["state"])
    try:
        wait_for_begin(host, "h/migrate")
        second = {
            "component": "app",
            "run": "OTHER",
            "root": str(host["root"]),
            "ops": [{"op": "switch", "step": "x/switch", "version": "2.0"}],
        }
        started = time.monotonic()
        code, out = finish(start(second, host["state"]))
        assert code == 1 and out[0]["op"] == "lock" and out[0]["busy"] is True, out
        assert out[0]["error"].startswith("locked by run APPLY (a, since "), out  # as the host lock would say
        assert "another upgrader program is running for app on this host (run APPLY, pid" in out[0]["error"]
        seconds = time.monotonic() - started
        assert 4 < seconds < 20
        record_property(
            "observed",
            f"exit {code} after {seconds:.1f} s, busy={out[0]['busy']}: {out[0]['error'].split(';')[0][:90]}",
        )
    finally:
        os.killpg(a.pid, 9)
        a.wait()


def test_a_takeover_of_a_process_that_is_not_an_agent_is_refused_not_killed(host, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    """The lock file names a pid (here: a plain sleep holding the flock), but /proc says it is no agent."""
    (host["state"] / "app").mkdir(parents=True, mode=0o700)
    (host["state"]).chmod(0o700)
    lock = host["state"] / "app" / "program.lock"
    holder = subprocess.Popen(["flock", str(lock), "sleep", "30"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while not lock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        lock.write_text(json.dumps({"pid": holder.pid, "start": _start(holder.pid), "run": "X"}))
        code, out = finish(start(rollback_program(host, 0.2), host["state"]))
        assert code == 1 and "not an upgrader agent" in out[0]["error"], out
        alive = holder.poll() is None
        assert alive, "not killed"
        record_property(
            "observed",
            f"exit {code}: {out[0]['error'].replace(str(tmp_path), '…')[:110]}; the sleep holding the lock "
            f"still running: {alive}",
        )
    finally:
        os.killpg(holder.pid, 9)
        holder.wait()


def _start(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[19])


def test_an_insecure_state_dir_fails_the_program_before_its_first_op(host, record_property) -> None:  # type: ignore[no-untyped-def]
    host["state"].mkdir(mode=0o777)
    host["state"].chmod(0o777)
    code, out = finish(start(apply_program(host, 0), host["state"]))
    assert code == 1 and len(out) == 1 and out[0]["op"] == "lock", out  # the program's first op is its lock
    assert f"refusing to write under {host['state']}: it is writable by group or others" in out[0]["error"]
    inside = list(host["state"].iterdir())
    assert "chmod go-w" in out[0]["error"] and inside == []
    assert os.readlink(host["root"] / "current") == "releases/1.0"
    record_property(
        "observed",
        f"exit {code}, {len(out)} op answered ({out[0]['op']}): "
        f"{out[0]['error'].split('; fix:')[0].replace(str(host['tmp']), '…')}; state/ holds {len(inside)}, "
        f"current -> {os.readlink(host['root'] / 'current')}",
    )


def test_a_canary_bake_in_flight_stops_at_once_for_a_rollback(host, record_property) -> None:  # type: ignore[no-untyped-def]
    """Checks and bakes only watch: they end as soon as a rollback asks, rather than after their minute."""
    bake = {
        "component": "app",
        "run": "APPLY",
        "root": str(host["root"]),
        "ops": [
            {"op": "lock", "mode": "acquire", "operator": "a", "step": "lock-acquire"},
            {"op": "bake", "step": "h/bake", "service": SERVICE, "checks": [], "duration": 60, "interval": 5},
        ],
    }
    a = start(bake, host["state"])
    try:
        wait_for_begin(host, "h/bake")
        code_b, out_b = finish(start(rollback_program(host, 30), host["state"]))
        code_a, out_a = finish(a)
    finally:
        a.kill()
    assert code_b == 0 and code_a == 1, (out_a, out_b)
    assert out_a[-1]["op"] == "lock" and out_a[-1]["error"].endswith("during h/bake") and out_a[-1]["handed_over"]
    records = journal(host)
    took = records[where(records, event="takeover")]
    assert took["how"] == "waited" and took["seconds"] < 3, took
    assert where(records, step="h/bake", phase="end") < where(records, event="takeover")
    record_property(
        "observed",
        f"60 s bake ended; rollback {took['how']} {took['seconds']:.2f} s; rollback exit {code_b}, apply exit "
        f"{code_a} (stopped {out_a[-1]['error'].rsplit(')', 1)[-1].strip()})",
    )


def slow_rollback(host: dict[str, Path], run: str, seconds: float, wait: float) -> dict[str, Any]:
    """A default-target emergency rollback whose check takes ``seconds`` (a service slow to come up)."""
    check = {
        "name": "slow",
        "kind": "command",
        "command": {"argv": ["sleep", str(seconds)]},
        "timeout": 60,
        "retries": 0,
        "interval": 0,
    }
    ops = [
        {**agent_pkg_lock("handover"), "takeover_wait": wait},
        {
            "op": "rollback",
            "step": "rollback",
            "to": None,
            "service": SERVICE,
            "checks": [],
            "recorded": True,
            "definitions": {"1.0": {"service": SERVICE, "checks": [check]}},
        },
        {**agent_pkg_lock("release"), "always": True},
    ]
    return {"component": "app", "run": run, "root": str(host["root"]), "ops": ops}


@pytest.mark.reliability(
    "a second rollback starts while the first is verifying the same host",
    "the first is neither interrupted nor killed; the second waits and has nothing to do",
)
def test_a_rollback_is_never_cut_short_by_another(host, record_property) -> None:  # type: ignore[no-untyped-def]
    (host["root"] / "current").unlink()
    (host["root"] / "current").symlink_to("releases/2.0")
    (host["root"] / "releases" / "2.0" / ".upgrader" / "previous.json").write_text(
        '{"version": "1.0", "run": "APPLY", "at": "2026-12-04T00:00:00Z"}'
    )
    a = start(slow_rollback(host, "RB-A", 1.5, 30), host["state"])
    try:
        wait_for_begin(host, "rollback")
        time.sleep(0.3)  # A is inside its verify
        b = start(slow_rollback(host, "RB-B", 0, 30), host["state"])
        code_b, out_b = finish(b)
        code_a, out_a = finish(a)
    finally:
        a.kill()
    assert code_a == 0 and out_a[1]["to"] == "1.0" and "switch" in out_a[1]["steps"], out_a
    assert code_b == 0 and out_b[1]["nothing"] is True, out_b
    records = journal(host)
    took = [r for r in records if r.get("event") == "takeover"]
    assert [t["run"] for t in took] == ["RB-A", "RB-B"] and took[1]["how"] == "waited", took
    assert not [r for r in records if r.get("event") == "taken-over"]
    assert not (host["state"] / "app" / "lock.json").exists()
    record_property(
        "observed",
        f"A exit {code_a} (switched to 1.0, verified); B exit {code_b} after waiting "
        f"{took[1]['seconds']} s: nothing to do ({out_b[1]['reason']}); no lock",
    )


def test_a_second_rollback_past_its_wait_is_refused_not_killing_the_first(host, record_property) -> None:  # type: ignore[no-untyped-def]
    (host["root"] / "current").unlink()
    (host["root"] / "current").symlink_to("releases/2.0")
    a = start(slow_rollback(host, "RB-A", 2.0, 30), host["state"])
    try:
        wait_for_begin(host, "rollback")
        code_b, out_b = finish(start(slow_rollback(host, "RB-B", 0, 0.3), host["state"]))
        code_a, out_a = finish(a)
    finally:
        a.kill()
    assert code_b == 1 and out_b[0]["op"] == "lock" and "another rollback (run RB-A" in out_b[0]["error"], out_b
    assert code_a == 0, out_a
    assert not (host["state"] / "app" / "lock.json").exists()
    record_property(
        "observed",
        f"second exit {code_b}: {out_b[0]['error'].split(';')[0][:100]}; first exit {code_a}; lock.json left: "
        f"{(host['state'] / 'app' / 'lock.json').exists()}",
    )
