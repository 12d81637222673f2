"""`upgrader diff OLD.json NEW.json`: what changed between two saved plans (for reviewers)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from upgrader.escaping import md_code, md_inline, visible
from upgrader.loading.inputs import read_plan_file
from upgrader.planning.diff import diff

HELP = "show what changed between two saved plans"

EPILOG = """\
example (in a pull request: the base branch's plan against this branch's):
  upgrader diff base/plan.json plan.json --format markdown

exit codes: 0 the plans are the same; 1 they differ (or a plan cannot be read: the error says which); 2 usage
  with --exit-zero: 0 whether or not they differ, 1 only when a plan cannot be read (for CI scripts)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("old", type=Path, metavar="OLD.json", help="the plan before (e.g. the base branch's)")
    parser.add_argument("new", type=Path, metavar="NEW.json", help="the plan after")
    parser.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    parser.add_argument(
        "--exit-zero",
        action="store_true",
        help="exit 0 when the plans differ too, so that 1 means only an unreadable plan",
    )


def run(args: argparse.Namespace) -> int:
    old, new = read_plan_file(args.old), read_plan_file(args.new)
    lines = diff(old, new)
    if args.format == "json":
        json.dump(
            {"old": old.content_hash, "new": new.content_hash, "same": not lines, "differences": lines},
            sys.stdout,
            indent=2,
            sort_keys=True,
        )
        print()
    elif args.format == "markdown":
        # Every value through upgrader.escaping: a plan's text cannot add a section or hide a line.
        print(
            f"### plan diff: {md_code(old.component)} {md_inline(old.target_version)} → "
            f"{md_code(new.component)} {md_inline(new.target_version)}\n"
        )
        print(
            f"Plan {md_code(old.content_hash[:19])} ({md_code(old.playbook.path)}) → "
            f"{md_code(new.content_hash[:19])} ({md_code(new.playbook.path)})\n"
        )
        print("\n".join(f"- {md_inline(line)}" for line in lines) if lines else "_no difference_")
    else:
        print("\n".join(visible(line) for line in lines) if lines else "no difference")  # one line each
    return 0 if not lines or args.exit_zero else 1
