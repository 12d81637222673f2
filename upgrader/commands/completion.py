"""`upgrader completion bash|zsh|tcsh`: a shell completion script for every command and option (shtab)."""

from __future__ import annotations

import argparse

HELP = "print a shell completion script (bash, zsh or tcsh)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", choices=["bash", "zsh", "tcsh"], help="the shell to complete in")


def run(args: argparse.Namespace) -> int:
    import shtab

    from upgrader.cli.main import build_parser

    print(shtab.complete(build_parser(), args.shell))  # every command's parser, not just this one
    return 0
