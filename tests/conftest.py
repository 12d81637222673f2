"""Suite-wide hooks: the reliability table (docs/reliability.md) is written from the test run itself.

Tests marked ``@pytest.mark.reliability`` are faults or bad inputs; each records
``scenario``, ``expected`` and ``observed`` with ``record_property`` (or passes
scenario and expected as the marker's arguments).  ``observed`` is what the test measured
(exit codes, messages, seconds, counts); a row without one says "no observation recorded".
A test's own ``expected`` wins over its module's marker, so a positive case in a module of
refusals states its own expectation.  Rows are merged into
docs/reliability.json by node id and docs/reliability.md is rendered from it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from temporal_server import temporal_server  # noqa: F401  (one Temporal dev server per session, for tests that ask)

REPO = Path(__file__).resolve().parents[1]
_rows: dict[str, dict[str, str]] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("reliability")
    if marker is None or (report.when != "call" and not (report.when == "setup" and report.outcome != "passed")):
        return
    props = dict(report.user_properties)
    if len(marker.args) == 2:
        scenario, expected = marker.args
    else:  # a module-wide marker names the expectation; the test's own name is the scenario
        scenario = props.get("scenario", item.name.removeprefix("test_").replace("_", " "))
        expected = props.get("expected", marker.args[0] if marker.args else "")
    observed = props.get("observed", "")
    if report.passed:
        # What the test saw, in its own words; a test that recorded nothing says so rather than
        # claiming the expectation (a row is a measurement, not a copy of what was hoped for).
        result = (
            f"{observed} (passed, {report.duration:.1f} s)"
            if observed
            else f"passed, no observation recorded ({report.duration:.1f} s)"
        )
    elif report.skipped:
        result = f"skipped: {report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr}"
    else:
        first = str(report.longrepr).strip().splitlines()[-1][:200] if report.longrepr else "failed"
        result = f"**FAILED** ({first})"
    _rows[item.nodeid] = {"scenario": scenario, "expected": expected, "observed": result}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Merge this run's rows into docs/reliability.json (a partial run updates only its own rows)."""
    if not _rows:
        return
    store = REPO / "docs" / "reliability.json"
    store.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(store.read_text()) if store.exists() else {}
    # A row stands for a test that exists: drop those whose file is gone, and, when nothing was
    # deselected, those of a file this run collected in full that no longer has that test or case.
    collected = {item.nodeid for item in session.items}
    whole = not (session.config.option.keyword or session.config.option.markexpr)
    files = {nodeid.split("::")[0] for nodeid in collected}
    rows = {
        n: r
        for n, r in rows.items()
        if (REPO / n.split("::")[0]).exists() and not (whole and n.split("::")[0] in files and n not in collected)
    }
    stamp = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    rows.update({nodeid: {**row, "run": stamp} for nodeid, row in _rows.items()})
    store.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    lines = [
        "# Reliability: faults and bad input",
        "",
        "Generated from test runs (tests marked `reliability`; `bash lab/test.sh` runs them all) — not written by",
        f"hand. {len(rows)} scenarios; each row says when it last ran.",
        "",
        "| scenario | expected | observed | run |",
        "|---|---|---|---|",
    ]
    for nodeid in sorted(rows, key=lambda n: (rows[n]["scenario"], n)):
        row = rows[nodeid]
        lines.append(f"| {row['scenario']} | {row['expected']} | {row['observed']} | {row['run']} |".replace("\n", " "))
    (REPO / "docs" / "reliability.md").write_text("\n".join(lines) + "\n")
