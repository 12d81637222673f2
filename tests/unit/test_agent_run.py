"""The agent's command runner (agent.run: posix_spawn and poll) on real processes.

It replaced subprocess.run, whose import cost every agent start ~5 ms of CPU; what subprocess gave
must still hold: both outputs whole (however large, in any order), exit codes and signals, a
timeout that kills, nothing inherited but stdin/stdout/stderr, and no process or descriptor left.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit import agent_code

AGENT = agent_code.AGENT


@pytest.fixture(scope="module")
def agent() -> ModuleType:
    return agent_code.load("upgrader_agent_run")


def open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def children() -> list[int]:
    """This process's children, live or zombie (a reaped child is gone)."""
    me, found = os.getpid(), []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found.append(int(name))
    return found


@settings(max_examples=25, deadline=None)
@given(out=st.binary(max_size=300_000), err=st.binary(max_size=300_000), code=st.integers(0, 255))
def test_both_outputs_come_back_whole_with_the_exit_code(
    agent: ModuleType, tmp_path_factory: pytest.TempPathFactory, out: bytes, err: bytes, code: int
) -> None:
    """Larger than a pipe's buffer on both streams at once: a runner reading one stream only would deadlock."""
    d = tmp_path_factory.mktemp("io")
    (d / "out").write_bytes(out)
    (d / "err").write_bytes(err)
    before = open_fds()
    proc = agent.run(
        [
            sys.executable,
            "-c",
            "import sys,os\n"
            "o=open(sys.argv[1],'rb').read(); e=open(sys.argv[2],'rb').read()\n"
            "for i in range(0, max(len(o), len(e)) + 1, 4096):\n"
            "    os.write(1, o[i:i+4096]); os.write(2, e[i:i+4096])\n"
            "sys.exit(int(sys.argv[3]))",
            str(d / "out"),
            str(d / "err"),
            str(code),
        ],
        30,
    )
    assert proc.returncode == code
    assert proc.stdout == out.decode("utf-8", "replace").replace("\r\n", "\n")
    assert proc.stderr == err.decode("utf-8", "replace").replace("\r\n", "\n")
    assert open_fds() == before, "a pipe was left open"


def test_a_command_killed_by_a_signal_reports_it_negative(agent: ModuleType) -> None:
    assert agent.run(["sh", "-c", "kill -TERM $$"], 10).returncode == -15


def test_stdin_is_empty_and_nothing_else_is_inherited(agent: ModuleType, tmp_path: Path) -> None:
    """A lock file the agent holds open must not stay held by a service a start command leaves running."""
    lock = os.open(tmp_path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.set_inheritable(lock, False)  # as every descriptor Python opens (PEP 446)
        proc = agent.run(["sh", "-c", "ls /proc/self/fd; cat"], 10)
    finally:
        os.close(lock)
    # the shell's 0, 1, 2 and the fd `ls` opens on /proc/self/fd; `cat` got EOF from /dev/null at once
    assert proc.returncode == 0 and {int(n) for n in proc.stdout.split()} <= {0, 1, 2, 3}, proc.stdout


def test_a_command_that_overruns_is_killed_and_reaped(agent: ModuleType, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    began = time.monotonic()
    with pytest.raises(agent.OpFailed) as caught:
        agent.run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"], 0.5)
    assert caught.value.detail == {"timed_out": True} and "did not finish within 0.5s" in str(caught.value)
    assert time.monotonic() - began < 10
    pid = int(pidfile.read_text())
    assert not Path(f"/proc/{pid}").exists(), "the overrunning command is still there (or a zombie)"
    assert children() == []


def test_a_command_that_closes_its_outputs_and_lingers_is_still_held_to_the_timeout(agent: ModuleType) -> None:
    with pytest.raises(agent.OpFailed, match="did not finish"):
        agent.run(["sh", "-c", "exec >&- 2>&-; sleep 30"], 0.5)
    assert children() == []


def test_a_missing_command_is_an_op_failure_not_a_crash(agent: ModuleType) -> None:
    before = open_fds()
    with pytest.raises(agent.OpFailed, match="cannot run no-such-command-here"):
        agent.run(["no-such-command-here", "x"], 5)
    assert open_fds() == before


def test_the_agent_starts_and_runs_commands_without_the_subprocess_module(agent: ModuleType) -> None:
    """What the change was for: neither the agent's start nor its commands import subprocess or what it
    pulls in (here with a descriptor inherited from outside, which the child must not get)."""
    code = (
        "import os,sys,types\nm=types.ModuleType('a')\n"
        f"exec(compile(open({str(AGENT)!r}).read(),'a','exec'),m.__dict__)\n"
        "r=os.open('/dev/null', os.O_RDONLY); os.set_inheritable(r, True)\n"
        "p=m.run(['sh', '-c', 'echo ok; ls /proc/self/fd >&2'], 5)\n"
        "print(p.stdout.strip(), sorted(int(n) for n in p.stderr.split()),"
        " sorted({'subprocess','threading','selectors'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok [0, 1, 2, 3] []", out.stdout


def test_without_proc_the_subprocess_fallback_gives_the_same_results(
    agent: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["sh", "-c", "printf 'a\\r\\nb'; printf 'err' >&2; exit 7"]
    spawned = agent.run(argv, 5)
    monkeypatch.setattr(agent, "_inherited", lambda: None)  # as on a host without /proc
    fallback = agent.run(argv, 5)
    assert (
        (fallback.returncode, fallback.stdout, fallback.stderr)
        == (spawned.returncode, spawned.stdout, spawned.stderr)
        == (7, "a\nb", "err")
    )
    with pytest.raises(agent.OpFailed) as caught:
        agent.run(["sleep", "30"], 0.3)
    assert caught.value.detail == {"timed_out": True}
    with pytest.raises(agent.OpFailed, match="cannot run no-such-command-here"):
        agent.run(["no-such-command-here"], 5)


def kept(data: bytes, limit: int) -> str:
    """What run() keeps of an output of ``data`` when it keeps at most ``limit`` bytes (ASCII data)."""
    if len(data) <= limit:
        return data.decode()
    head, tail = limit // 2, limit - limit // 2
    return f"{data[:head].decode()}\n[... {len(data) - limit} bytes of output not kept ...]\n{data[-tail:].decode()}"


WRITER = (
    "import os,sys\no=open(sys.argv[1],'rb').read(); e=open(sys.argv[2],'rb').read(); n=int(sys.argv[3])\n"
    "for i in range(0, max(len(o), len(e)) + 1, n):\n    os.write(1, o[i:i+n]); os.write(2, e[i:i+n])\n"
)


@settings(max_examples=40, deadline=None)
@given(
    out=st.binary(max_size=12_000).map(lambda b: bytes(c % 94 + 33 for c in b)),
    err=st.binary(max_size=12_000).map(lambda b: bytes(c % 94 + 33 for c in b)),
    limit=st.integers(2, 6_000),
    piece=st.integers(1, 5_000),
    fallback=st.booleans(),
)
def test_each_output_keeps_its_first_and_last_halves_and_counts_the_rest(
    tmp_path_factory: pytest.TempPathFactory, out: bytes, err: bytes, limit: int, piece: int, fallback: bool
) -> None:
    """Whatever the sizes and however the command writes, each output is whole up to the limit, and
    past it exactly its first and last halves with the count of what was between."""
    agent = agent_code.load("upgrader_agent_run_kept")
    agent.__dict__["OUTPUT_KEPT"] = limit
    if fallback:
        agent.__dict__["_inherited"] = lambda: None  # the subprocess path (no /proc) keeps the same
    d = tmp_path_factory.mktemp("kept")
    (d / "out").write_bytes(out)
    (d / "err").write_bytes(err)
    proc = agent.run([sys.executable, "-c", WRITER, str(d / "out"), str(d / "err"), str(piece)], 30)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, kept(out, limit), kept(err, limit))
    assert children() == []


@pytest.mark.parametrize("path", ["spawn", "subprocess"])
def test_a_command_that_prints_without_end_does_not_grow_the_agent(path: str) -> None:
    """A check or step command (from a playbook) printing hundreds of MB: root's agent keeps 1 MiB of each
    output and its own memory stays flat: its peak RSS (VmHWM: this image's own, where getrusage's
    maxrss would include the forking test process's) stays far below what it read."""
    code = (
        "import types\nm=types.ModuleType('a')\n"
        f"exec(compile(open({str(AGENT)!r}).read(),'a','exec'),m.__dict__)\n"
        f"{'m._inherited = lambda: None' if path == 'subprocess' else ''}\n"
        "p=m.run(['sh', '-c', 'yes | head -c 268435456; head -c 67108864 /dev/zero >&2'], 120)\n"
        "hwm=[l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
        "print(p.returncode, len(p.stdout), len(p.stderr), p.stdout.count('not kept'), int(hwm) // 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    exit_code, out_len, err_len, markers, peak_mb = (int(v) for v in out.stdout.split())
    assert (exit_code, markers) == (0, 1), out.stdout
    assert out_len == (1 << 20) + len("\n[... 267386880 bytes of output not kept ...]\n")
    assert err_len == (1 << 20) + len("\n[... 66060288 bytes of output not kept ...]\n")
    assert peak_mb < 64, f"the agent grew to {peak_mb} MB reading 320 MB of output"
