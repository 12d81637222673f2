"""Help that teaches: every command documents its inputs, shows an example and lists its exit codes."""

from __future__ import annotations

import argparse

import pytest

from upgrader import commands
from upgrader.cli.main import build_parser, main


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("name", commands.available())
def test_every_command_has_an_example_and_its_exit_codes(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "example" in text and "exit codes:" in text, text[-400:]


@pytest.mark.parametrize("name", commands.available())
def test_every_input_is_documented(name: str) -> None:
    parser = subparsers()[name]
    for action in parser._actions:
        if "--inventory" in action.option_strings or not action.option_strings:
            assert action.help, f"{name}: {action.dest} has no help"


def test_completion_script_knows_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    for name in commands.available():
        assert name in script
    assert "--inventory" in script and "--reason" in script
