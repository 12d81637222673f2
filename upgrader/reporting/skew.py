"""Version-skew metrics from `upgrader audit`, for node_exporter's textfile collector.

Written to their own file (``upgrader_audit.prom``) so the audit timer and the run metrics never
replace each other's series.  Alert on ``upgrader_audit_outliers > 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from upgrader.reporting.consistency import HostAudit, skew_counts
from upgrader.reporting.metrics import family

FILENAME = "upgrader_audit.prom"

HELP = {
    "upgrader_audit_hosts": "Hosts per component and audit verdict at the last `upgrader audit`.",
    "upgrader_audit_outliers": "Hosts per component not running the expected version (any verdict but ok).",
    "upgrader_audit_host_ok": "1 if the host's service reports the expected version, else 0.",
    "upgrader_audit_timestamp_seconds": "When the last audit ran (Unix time).",
}


def render_audit_metrics(rows: Sequence[HostAudit], at: float) -> str:
    """The exposition text (pure): series sorted, HELP and TYPE on every family."""
    counts = skew_counts(rows)
    hosts = [({"component": c, "verdict": str(v)}, float(n)) for (c, v), n in sorted(counts.items())]
    outliers: dict[str, int] = {}
    for r in rows:
        outliers[r.component] = outliers.get(r.component, 0) + (0 if r.ok else 1)
    per_host = [
        (
            {
                "component": r.component,
                "host": r.host,
                "datacenter": r.datacenter,
                "expected": r.expected.version if r.expected else "",
                "reported": r.reported or "",
            },
            1.0 if r.ok else 0.0,
        )
        for r in sorted(rows, key=lambda r: (r.component, r.host))
    ]
    series: dict[str, list[tuple[dict[str, str], float]]] = {
        "upgrader_audit_hosts": hosts,
        "upgrader_audit_outliers": [({"component": c}, float(n)) for c, n in sorted(outliers.items())],
        "upgrader_audit_host_ok": per_host,
        "upgrader_audit_timestamp_seconds": [({}, at)],
    }
    return "".join(family(name, values, HELP[name]) for name, values in series.items())


def write_audit_metrics(rows: Sequence[HostAudit], directory: Path, at: float) -> Path:
    """Replace ``directory``/upgrader_audit.prom; ``directory`` is never created (loading/output.py)."""
    from upgrader.loading import output

    return output.write_text(
        directory / FILENAME, render_audit_metrics(rows, at), "--metrics-dir", mode=0o644, atomic=True
    )
