"""Prometheus textfile-collector export, computed from every run journal in the state directory.

node_exporter reads ``*.prom`` files from its ``--collector.textfile.directory``;
the file is written to a temporary name and renamed, so it never reads half a file.
Unfinished runs (no ``run-end`` yet) are left out: their duration and exit code
are not known.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from upgrader.reporting.model import RunRecord
from upgrader.reporting.parse import load_runs

FILENAME = "upgrader.prom"

HELP = {
    "upgrader_run_duration_seconds": "Wall-clock duration of the last finished run per component, kind and status.",
    "upgrader_hosts_total": "Hosts per outcome in the last finished run of each component.",
    "upgrader_last_success_timestamp_seconds": "End time of the last apply run that succeeded, per component.",
    "upgrader_run_exit_code": "Exit code of the last finished run per component and kind (0 ok, 3 rolled back, "
    "4 a human must act, 5 halted part-way: README, Exit codes).",
}


def write_metrics(state_dir: Path, directory: Path) -> Path:
    """Compute the metrics from all journals under ``state_dir`` and replace ``directory/upgrader.prom``."""
    from upgrader.loading import output

    text = render_metrics(load_runs(state_dir))
    # Never creates ``directory`` (loading/output.py); the temporary name does not end in .prom: the
    # collector ignores it while it is written.  0644: node_exporter runs as another user.
    return output.write_text(directory / FILENAME, text, "--metrics-dir", mode=0o644, atomic=True)


def render_metrics(records: Iterable[RunRecord]) -> str:
    """The exposition text (pure): one gauge family each, series sorted, HELP and TYPE on every family."""
    ended: list[tuple[datetime, RunRecord]] = sorted(
        ((r.ended, r) for r in records if r.finished and r.ended), key=lambda pair: pair[0]
    )
    finished = [r for _, r in ended]
    last_by_kind = {(r.component, r.kind): r for r in finished}
    last = {r.component: r for r in finished}
    success = {r.component: at for at, r in ended if r.kind == "apply" and r.exit_code == 0}
    series: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in HELP}
    for (component, kind), r in sorted(last_by_kind.items()):
        series["upgrader_run_duration_seconds"].append(
            ({"component": component, "kind": kind, "status": r.status}, r.seconds or 0.0)
        )
        if r.exit_code is not None:
            series["upgrader_run_exit_code"].append(({"component": component, "kind": kind}, float(r.exit_code)))
    for component, r in sorted(last.items()):
        for outcome, n in r.counts().items():
            series["upgrader_hosts_total"].append(({"component": component, "outcome": outcome}, float(n)))
    for component, at in sorted(success.items()):
        series["upgrader_last_success_timestamp_seconds"].append(({"component": component}, at.timestamp()))
    return "".join(family(name, rows) for name, rows in series.items())


def family(name: str, rows: list[tuple[dict[str, str], float]], help_text: str | None = None) -> str:
    lines = [f"# HELP {name} {help_text or HELP[name]}", f"# TYPE {name} gauge"]
    lines += [f"{name}{{{labels(lab)}}} {number(value)}" for lab, value in rows]
    return "\n".join(lines) + "\n"


def labels(values: dict[str, str]) -> str:
    return ",".join(f'{k}="{escape(v)}"' for k, v in values.items())


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(round(value, 3))
