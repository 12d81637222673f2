"""The reliability table: a test run writes its rows to build/reliability/; the committed table is updated on purpose.

A test run (tests/conftest.py) merges its rows into ``build/reliability/reliability.json`` and renders
``reliability.md`` beside it, so running the suite never rewrites a tracked file. ``python -m lab reliability
update`` then brings the committed ``docs/reliability.json`` and ``docs/reliability.md`` up to date: for each
test the newer of its committed row and its run row is kept, and rows of tests that are no longer in the
tree (or no longer marked ``reliability``) are dropped. ``python -m lab reliability check`` (and
tests/unit/test_reliability_table.py) fails while the committed table is not current.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
Rows = dict[str, dict[str, str]]
# Lists the node ids of the marked tests; runs nothing, so it writes no row.
COLLECT = ("--collect-only", "-q", "-m", "reliability", "-p", "no:cacheprovider")


def run_dir() -> Path:
    """Where a test run writes its table ($UPGRADER_RELIABILITY_DIR, so parallel checkouts need not share one)."""
    return Path(os.environ.get("UPGRADER_RELIABILITY_DIR") or REPO / "build" / "reliability")


def load(path: Path) -> Rows:
    rows: Rows = json.loads(path.read_text()) if path.exists() else {}
    return rows


def render(rows: Rows) -> str:
    """docs/reliability.md for these rows: one line per test, sorted by scenario then node id."""
    lines = [
        "# Reliability: faults and bad input",
        "",
        "Generated from test runs (tests marked `reliability`; `bash lab/test.sh` runs them all, and",
        "`python -m lab reliability update` copies the run's rows here) — not written by hand.",
        f"{len(rows)} scenarios; each row says when it last ran.",
        "",
        "| scenario | expected | observed | run |",
        "|---|---|---|---|",
    ]
    for nodeid in sorted(rows, key=lambda n: (rows[n]["scenario"], n)):
        row = rows[nodeid]
        lines.append(f"| {row['scenario']} | {row['expected']} | {row['observed']} | {row['run']} |".replace("\n", " "))
    return "\n".join(lines) + "\n"


def save(rows: Rows, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reliability.json").write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    (folder / "reliability.md").write_text(render(rows))


def record_run(rows: Rows) -> Path:
    """Merge a test run's rows into the build directory's table (a partial run adds to the previous ones)."""
    folder = run_dir()
    merged = load(folder / "reliability.json")
    merged.update(rows)
    save(merged, folder)
    return folder


def marked_tests() -> set[str]:
    """Node ids of every test in the tree marked `reliability`, as pytest collects them (nothing runs)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *COLLECT, "tests"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"collecting the tests failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr}")
    return {line.strip() for line in proc.stdout.splitlines() if "::" in line and not line.startswith(" ")}


def merged(committed: Rows, run: Rows, marked: set[str]) -> Rows:
    """The committed table brought up to date: per test the newer row ("YYYY-MM-DD HH:MM UTC" sorts in
    time order; on a tie the run's), and only tests that still exist and are still marked."""
    rows: Rows = {}
    for nodeid in marked:
        candidates = [r for r in (committed.get(nodeid), run.get(nodeid)) if r is not None]
        if candidates:
            rows[nodeid] = max(reversed(candidates), key=lambda r: r["run"])
    return rows


def problems(committed: Rows, markdown: str, marked: set[str]) -> list[str]:
    """Why the committed table is not current (empty when it is)."""
    found = [
        f"no row for {n} (run it, then `python -m lab reliability update`)" for n in sorted(marked - set(committed))
    ]
    found += [f"row for a test that no longer exists or is not marked: {n}" for n in sorted(set(committed) - marked)]
    if markdown != render(committed):
        found.append(
            "docs/reliability.md is not what docs/reliability.json renders (`python -m lab reliability update`)"
        )
    return found


def update(folder: Path = DOCS) -> str:
    """Copy the run's rows into the committed table; says what changed."""
    committed, run, marked = load(folder / "reliability.json"), load(run_dir() / "reliability.json"), marked_tests()
    rows = merged(committed, run, marked)
    save(rows, folder)
    changed = sum(1 for n in rows if n in committed and rows[n] != committed[n])
    added, dropped = len(set(rows) - set(committed)), len(set(committed) - set(rows))
    missing = len(marked - set(rows))
    return (
        f"{folder / 'reliability.json'}: {len(rows)} rows ({added} added, {changed} updated, {dropped} dropped); "
        f"{missing} marked test(s) have not run yet"
    )


def check(folder: Path = DOCS) -> list[str]:
    md = folder / "reliability.md"
    return problems(load(folder / "reliability.json"), md.read_text() if md.exists() else "", marked_tests())
