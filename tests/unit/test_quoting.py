"""Hostile strings stay data all the way to the host: argv quoted once, programs base64 JSON."""

from __future__ import annotations

import base64
import json
import shlex
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upgrader import agent
from upgrader.transport.fabric_adapter import command_line

pytestmark = pytest.mark.reliability("hostile strings reach the host as literal arguments")

HOSTILE = ["1.0; rm -rf /", "$(touch /tmp/pwned)", "`id`", "a'b\"c", "x\ny", "-rf", "--", "‮evil", "a\\", "*", "~root"]


@pytest.mark.parametrize("word", HOSTILE)
def test_each_argument_comes_back_unchanged_from_the_shell(word: str) -> None:
    argv = ["echo", word, "tail"]
    line = command_line(argv, sudo=True, user="deploy")
    assert shlex.split(line) == ["sudo", "-n", "--", *argv]
    out = subprocess.run(
        ["sh", "-c", command_line(["printf", "%s|", word, "tail"], sudo=False, user="root")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == f"{word}|tail|"


@given(
    st.lists(
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20),
        min_size=1,
        max_size=5,
    )
)
def test_any_argv_round_trips_through_quoting(argv: list[str]) -> None:
    assert shlex.split(command_line(argv, sudo=False, user="root")) == argv


def test_agent_programs_carry_values_as_base64_json_only() -> None:
    program = {
        "component": "ordergw",
        "root": "/opt/ordergw",
        "run": "r",
        "ops": [{"op": "migrate", "argv": ["/bin/echo", *HOSTILE], "version": "$(reboot)"}],
    }
    argv = agent.serving_command()
    assert argv[:5] == ["python3", "-I", "-S", "-c", agent.LOADER]
    line = agent.serving_input(program).splitlines()[-1]  # the program, on the agent's stdin
    assert all(c.isalnum() or c in "+/=" for c in argv[5] + line), "only hex and base64 reach the shell or stdin"
    assert json.loads(base64.b64decode(line)) == program
