"""Hostile strings stay data all the way to the host: argv quoted once, programs base64 JSON."""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upgrader import agent
from upgrader.transport.fabric_adapter import command_line

pytestmark = pytest.mark.reliability("hostile strings reach the host as literal arguments")
Record = Callable[[str, object], None]

HOSTILE = ["1.0; rm -rf /", "$(touch /tmp/pwned)", "`id`", "a'b\"c", "x\ny", "-rf", "--", "‮evil", "a\\", "*", "~root"]


@pytest.mark.parametrize("word", HOSTILE)
def test_each_argument_comes_back_unchanged_from_the_shell(word: str, record_property: Record) -> None:
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
    # The row is a Markdown table cell: the printed words are shown as a list, not with printf's "|".
    record_property("observed", f"sh printed {out.split('|')[:-1]}; sudo line splits to {len(shlex.split(line))} words")


def test_any_argv_round_trips_through_quoting(record_property: Record) -> None:
    seen = {"argvs": 0, "words": 0, "metachars": 0}

    @given(
        st.lists(
            st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20),
            min_size=1,
            max_size=5,
        )
    )
    def any_argv(argv: list[str]) -> None:
        back = shlex.split(command_line(argv, sudo=False, user="root"))
        assert back == argv
        seen["argvs"] += 1
        seen["words"] += len(back)
        seen["metachars"] += sum(any(c in "$`;|&<>*?'\"\\ \n" for c in w) for w in back)

    any_argv()
    record_property(
        "observed",
        f"{seen['argvs']} random argvs ({seen['words']} words, {seen['metachars']} with shell metacharacters) "
        "split back equal",
    )


def test_agent_programs_carry_values_as_base64_json_only(record_property: Record) -> None:
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
    record_property(
        "observed",
        f"{len(argv)} argv words; the program on stdin is {len(line)} chars of base64, characters used "
        f"{''.join(sorted({c for c in argv[5] + line if not c.isalnum()}))!r} besides letters and digits; "
        "it decodes equal",
    )
