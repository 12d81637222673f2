"""`upgrader report RUN`: one run as Markdown or a self-contained HTML page; optionally Prometheus metrics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from upgrader.errors import RefusedError
from upgrader.loading import output

HELP = "report on one run (markdown or html: timeline, failures, rollbacks); export Prometheus metrics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN", help="a run id from `upgrader runs`")
    parser.add_argument(
        "--format",
        choices=["markdown", "html"],
        default=None,
        help="default: html when --out ends in .html, else markdown",
    )
    parser.add_argument("--out", type=Path, help="write the report to this file instead of stdout")
    parser.add_argument(
        "--metrics",
        type=Path,
        metavar="DIR",
        help="also write upgrader.prom (from all runs) into this textfile-collector directory",
    )


def run(args: argparse.Namespace) -> int:
    from upgrader.reporting import load_run, to_html, to_markdown, write_metrics

    output.check(args.out)
    output.check_dir(args.metrics, "--metrics")
    record = load_run(args.state_dir, args.run_id)
    fmt = args.format or ("html" if args.out and args.out.suffix in (".html", ".htm") else "markdown")
    text = to_html(record) if fmt == "html" else to_markdown(record)
    if args.out:
        output.write_text(args.out, text)
        print(f"wrote {args.out} ({fmt}, run {record.run_id}: {record.status})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if args.metrics:
        try:
            path = write_metrics(args.state_dir, args.metrics)
        except OSError as exc:
            raise RefusedError(
                f"cannot write metrics into {args.metrics}: {exc}",
                "point --metrics at node_exporter's textfile directory",
            ) from None
        print(f"wrote {path}", file=sys.stderr)
    return 0
