"""Suite-wide hooks: the reliability table (docs/reliability.md) is written from the test run itself.

Tests marked ``@pytest.mark.reliability`` are faults or bad inputs; each records
``scenario``, ``expected`` and ``observed`` with ``record_property`` (or passes
scenario and expected as the marker's arguments).  ``observed`` is what the test measured
(exit codes, messages, seconds, counts); a row without one says "no observation recorded".
A test's own ``expected`` wins over its module's marker, so a positive case in a module of
refusals states its own expectation.  Rows are merged by node id into build/reliability/ (lab/reliability.py);
the committed docs/reliability.* change only through `python -m lab reliability update`, so a test run
leaves the tree clean.
"""

from __future__ import annotations

import datetime as dt

import pytest

from lab import reliability
from tests.temporal_server import temporal_server, temporal_small_history  # noqa: F401  (one Temporal dev server per session, for tests that ask)

_WRITTEN = pytest.StashKey[str]()
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
    """Merge this run's rows into build/reliability/ (docs/ changes only by `python -m lab reliability update`)."""
    if not _rows:
        return
    stamp = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    folder = reliability.record_run({nodeid: {**row, "run": stamp} for nodeid, row in _rows.items()})
    session.config.stash[_WRITTEN] = str(folder)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if (folder := terminalreporter.config.stash.get(_WRITTEN, None)) is not None:
        terminalreporter.write_line(
            f"reliability: {len(_rows)} rows written to {folder}; `python -m lab reliability update` puts them in docs/"
        )
