"""The suite's own layout: what would stop pytest from collecting it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def test_test_file_names_are_unique_across_the_suite() -> None:
    """pytest imports test modules by basename (rootdir, no packages): a second test_x.py stops collection."""
    tests = Path(__file__).resolve().parents[1]
    names = Counter(p.name for p in tests.rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []
