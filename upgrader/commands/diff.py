"""`upgrader diff OLD.json NEW.json`: what changed between two saved plans (for reviewers)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from upgrader.loading.inputs import read_plan_file
from upgrader.planning.diff import diff

HELP = "show what changed between two saved plans"

EPILOG = """\
example (in a pull request: the base branch's plan against this branch's):
  upgrader diff base/plan.json plan.json --format markdown

exit codes: 0 the plans are the same; 1 they differ (or a plan cannot be read: the error says which); 2 usage
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("old", type=Path, metavar="OLD.json", help="the plan before (e.g. the base branch's)")
    parser.add_argument("new", type=Path, metavar="NEW.json", help="the plan after")
    parser.add_argument("--format", choices=["text", "markdown", "json"], default="text")


def run(args: argparse.Namespace) -> int:
    old, new = read_plan_file(args.old), read_plan_file(args.new)
    lines = diff(old, new)
    if args.format == "json":
        json.dump({"old": old.content_hash, "new": new.content_hash, "same": not lines, "differences": lines},
                  sys.stdout, indent=2, sort_keys=True)
        print()
    elif args.format == "markdown":
        print(f"### plan diff `{old.content_hash[:19]}` → `{new.content_hash[:19]}`\n")
        print("\n".join(f"- {line}" for line in lines) if lines else "_no difference_")
    else:
        print("\n".join(lines) if lines else "no difference")
    return 0 if not lines else 1
