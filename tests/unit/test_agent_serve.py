"""The agent's serving mode (one process, many programs) and the controller's line framing, on real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit import agent_code
from upgrader import agent
from upgrader.transport.fabric_adapter import _past_line

AGENT = agent_code.AGENT  # the program a host is sent, in a file


def _program(root: Path) -> dict[str, object]:
    return {"component": "unit-serve", "root": str(root), "run": None, "ops": [{"op": "facts"}]}


def _read_until_end(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    while True:
        line = proc.stdout.readline()
        assert line, f"agent exited early: {lines}"
        lines.append(line)
        if line.startswith(agent.END):
            return lines


def test_one_process_answers_program_after_program_until_eof(tmp_path: Path) -> None:
    (tmp_path / "releases" / "1.0").mkdir(parents=True)
    (tmp_path / "current").symlink_to("releases/1.0")
    # the program run directly (not through the bootstrap, which would cache code under /var/lib/upgrader here)
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", str(AGENT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None
    try:
        for _ in range(3):
            proc.stdin.write(agent.pack_program(_program(tmp_path)) + "\n")
            proc.stdin.flush()
            lines = _read_until_end(proc)
            assert lines[-1] == f"{agent.END}0\n"
            (result,) = agent.parse_output("".join(lines))
            assert result["ok"] and result["installed"] == "1.0" and result["staged"] == ["1.0"]
        failing = {**_program(tmp_path), "ops": [{"op": "no-such-op"}]}  # refused unrun: nothing journaled
        proc.stdin.write(agent.pack_program(failing) + "\n")  # (which would be /var/lib/upgrader on this machine)
        proc.stdin.flush()
        lines = _read_until_end(proc)
        assert lines[-1] == f"{agent.END}1\n", "a failed program says so and the agent keeps serving"
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


SYSTEM_PYTHON = Path("/usr/bin/python3")  # the hosts' kind of python3; also readable by an unprivileged user


def _as_unprivileged() -> dict[str, object]:
    """Run as nobody when root: the bootstrap then cannot cache under /var/lib/upgrader on this machine."""
    return {"user": "nobody", "group": "nogroup", "cwd": "/"} if os.geteuid() == 0 else {"cwd": "/"}


@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="needs /usr/bin/python3 (Debian's python3)")
def test_a_serving_agent_gets_its_source_and_programs_on_stdin_with_nothing_bulky_on_its_command_line() -> None:
    argv = agent.serving_command(str(SYSTEM_PYTHON))
    assert argv[1:5] == ["-I", "-S", "-c", agent.LOADER] and argv[5] == agent.source_key() and len(argv) == 6
    assert sum(map(len, argv)) < 200, "sudo logs it and ps shows it on every host"
    nothing: dict[str, Any] = {"component": "unit-serve", "root": "/nonexistent", "run": None, "ops": []}
    empty = agent.pack_program(nothing)
    failing = agent.pack_program(
        {"component": "unit-serve", "root": "/nonexistent", "run": None, "ops": [{"op": "no-such-op"}]}
    )  # refused before it is journaled: nothing written on this machine
    res = subprocess.run(
        argv,
        input=f"{agent.serving_input(nothing)}\n{failing}\n{empty}\n",
        capture_output=True,
        text=True,
        timeout=30,
        **_as_unprivileged(),
    )  # type: ignore[call-overload]
    assert res.returncode == 0, res.stderr
    ends = [line for line in res.stdout.splitlines() if line.startswith(agent.END)]
    assert ends == [f"{agent.END}0", f"{agent.END}1", f"{agent.END}0"], res.stdout
    (failed,) = agent.parse_output(res.stdout)
    assert failed["op"] == "no-such-op" and not failed["ok"]


@pytest.mark.parametrize(
    ("buf", "end"),
    [
        (b"", -1),
        (b"@@upgrader-end 0", -1),  # the line is not complete yet
        (b"@@upgrader-end 0\n", 17),
        (b"@@upgrader {}\n@@upgrader-end 1\nnext", 31),
        (b"noise @@upgrader-end 0\n", -1),  # only at the start of a line
        (b"x\n@@upgrader-end 0\n@@upgrader-end 1\n", 19),  # the first one
    ],
)
def test_an_exchange_ends_after_the_first_complete_end_line(buf: bytes, end: int) -> None:
    assert _past_line(buf, agent.END.encode())[0] == end


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        st.sampled_from(
            [
                b"@@upgrader-end 0\n",
                b"@@upgrader-end ",
                b"@@upg",
                b"rader-end 1",
                b"\n",
                b"x",
                b"noise @@upgrader-end 2\n",
                b"@@upgrader {}\n",
                b"@",
            ]
        ),
        max_size=12,
    ),
    cuts=st.lists(st.integers(0, 200), max_size=8),
)
def test_the_end_line_is_found_the_same_however_the_answer_arrives(parts: list[bytes], cuts: list[int]) -> None:
    """The stream searches each new piece once (resuming where an end line may still begin): split
    anywhere, it finds the same end as a search of the whole answer at once."""
    whole = b"".join(parts)
    marker = agent.END.encode()
    expected = _past_line(whole, marker)[0]
    buf, start, found = b"", 0, -1
    for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(whole)], strict=True):
        buf += whole[a:b]
        found, start = _past_line(buf, marker, start)
        if found >= 0:
            break
    assert found == expected
