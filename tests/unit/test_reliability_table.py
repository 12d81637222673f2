"""The reliability table: a test run writes build/reliability/, never the committed docs/reliability.*;
`python -m lab reliability update` brings the committed table up to date, and this suite checks it is."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from lab import reliability

REPO = Path(__file__).resolve().parents[2]
QUICK = "tests/unit/test_agent_extract.py::test_a_well_formed_release_is_unpacked"  # marked, well under a second


def test_the_committed_table_is_current() -> None:
    """Every test marked `reliability` has a row, no row names a test that is gone, and the .md renders the .json."""
    assert reliability.check() == []


def test_a_test_run_leaves_the_committed_table_alone(tmp_path: Path) -> None:
    docs = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (REPO / "docs").glob("reliability.*")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", QUICK],
        cwd=REPO,
        env={**os.environ, "UPGRADER_RELIABILITY_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in docs} == docs
    rows = json.loads((tmp_path / "reliability.json").read_text())
    assert list(rows) == [QUICK] and "passed" in rows[QUICK]["observed"]
    assert (tmp_path / "reliability.md").read_text() == reliability.render(rows)


stamps = st.builds(
    lambda d, h, m: f"2026-12-{d:02d} {h:02d}:{m:02d} UTC", st.integers(1, 28), st.integers(0, 23), st.integers(0, 59)
)
row = st.builds(lambda text, run: {"scenario": text, "expected": text, "observed": text, "run": run}, st.text(), stamps)
ids = st.sampled_from([f"tests/unit/test_x.py::test_{i}" for i in range(6)])
tables = st.dictionaries(ids, row)


@given(committed=tables, run=tables, marked=st.sets(ids))
def test_an_update_keeps_the_newer_row_of_each_marked_test(
    committed: reliability.Rows, run: reliability.Rows, marked: set[str]
) -> None:
    rows = reliability.merged(committed, run, marked)
    assert set(rows) == marked & (set(committed) | set(run))
    for nodeid, kept in rows.items():
        older = [r for r in (committed.get(nodeid), run.get(nodeid)) if r is not None]
        assert kept["run"] == max(r["run"] for r in older)
        if nodeid in run and run[nodeid]["run"] >= kept["run"]:
            assert kept == run[nodeid]  # on a tie the run's row, the one just measured
    assert reliability.problems(rows, reliability.render(rows), set(rows)) == []


@given(committed=tables, marked=st.sets(ids))
def test_a_missing_a_stale_and_an_unrendered_row_are_each_named(committed: reliability.Rows, marked: set[str]) -> None:
    found = reliability.problems(committed, reliability.render(committed) + "edited\n", marked)
    assert sum("no row for" in f for f in found) == len(marked - set(committed))
    assert sum("no longer exists" in f for f in found) == len(set(committed) - marked)
    assert found[-1].startswith("docs/reliability.md is not what")
