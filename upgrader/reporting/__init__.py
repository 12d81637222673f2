"""Reports on recorded runs: who ran what and why, every host's steps over time, what failed and was undone.

Everything here reads journals; nothing touches a host.
"""

from upgrader.reporting.html import to_html
from upgrader.reporting.markdown import to_markdown
from upgrader.reporting.metrics import render_metrics, write_metrics
from upgrader.reporting.model import RunRecord
from upgrader.reporting.parse import load_run, load_runs, parse_run

__all__ = [
    "RunRecord",
    "load_run",
    "load_runs",
    "parse_run",
    "render_metrics",
    "to_html",
    "to_markdown",
    "write_metrics",
]
