"""`upgrader diff OLD.json NEW.json`: what changed between two saved plans (for reviewers)."""

from __future__ import annotations

import argparse
from pathlib import Path

from upgrader.loading.inputs import read_plan_file
from upgrader.planning.diff import diff

HELP = "show what changed between two saved plans"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", type=Path, metavar="OLD.json")
    parser.add_argument("new", type=Path, metavar="NEW.json")
    parser.add_argument("--format", choices=["text", "markdown"], default="text")


def run(args: argparse.Namespace) -> int:
    old, new = read_plan_file(args.old), read_plan_file(args.new)
    lines = diff(old, new)
    if args.format == "markdown":
        print(f"### plan diff `{old.content_hash[:19]}` → `{new.content_hash[:19]}`\n")
        print("\n".join(f"- {line}" for line in lines) if lines else "_no difference_")
    else:
        print("\n".join(lines) if lines else "no difference")
    return 0 if not lines else 1
