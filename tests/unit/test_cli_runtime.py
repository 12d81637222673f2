"""The `upgrader` executable's interpreter settings (cli.main.tune_runtime).

Loading and planning a large inventory builds millions of objects that live to the end and almost no
reference cycles; at CPython's default thresholds the cyclic collector walked all of them again and
again (1.45 s of the 3.05 s of CPU `upgrader plan` took for 10,000 hosts).
"""

from __future__ import annotations

import gc
import importlib.util
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from upgrader.cli.main import GC_THRESHOLD, tune_runtime
from upgrader.commands.inputs import load_inputs
from upgrader.errors import InputError
from upgrader.loading import yamlfile
from upgrader.planning.planner import facts_from_inventory, make_plan

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def runtime() -> Iterator[None]:
    """The test process's own settings, put back."""
    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    yield
    gc.set_threshold(*threshold)
    sys.setswitchinterval(interval)


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("plan_10k", BENCH / "plan_10k.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _collector_seconds(threshold: tuple[int, int, int], playbook: Path, inventory: Path) -> float:
    """CPU seconds the cyclic collector ran while loading and planning (between its start and stop callbacks)."""
    spent, started = 0.0, 0.0

    def clock(phase: str, info: dict[str, Any]) -> None:
        nonlocal spent, started
        if phase == "start":
            started = time.process_time()
        else:
            spent += time.process_time() - started

    gc.collect()
    gc.set_threshold(*threshold)
    gc.callbacks.append(clock)
    try:
        inputs = load_inputs(playbook, inventory)
        pb, inv = inputs.playbook.model, inputs.inventory.model
        make_plan(
            pb, inv, facts_from_inventory(inv), playbook_ref=inputs.playbook_ref(), inventory_ref=inputs.inventory_ref()
        )
    finally:
        gc.callbacks.remove(clock)
    return spent


def test_the_executable_collects_cycles_in_batches(runtime: None) -> None:
    tune_runtime()
    assert gc.get_threshold() == GC_THRESHOLD
    assert sys.getswitchinterval() == pytest.approx(0.0005)


def test_a_large_inventory_is_loaded_and_planned_without_walking_the_heap_again_and_again(
    runtime: None, tmp_path: Path
) -> None:
    bench = _bench()
    inventory, playbook = tmp_path / "inventory.yml", tmp_path / "ordergw.yml"
    inventory.write_text(yaml.safe_dump(bench.inventory(2_000), sort_keys=False), encoding="utf-8")
    playbook.write_text(bench.playbook(bench.PLAYBOOK.read_text(encoding="utf-8")), encoding="utf-8")
    default = _collector_seconds((700, 10, 10), playbook, inventory)
    tuned = _collector_seconds(GC_THRESHOLD, playbook, inventory)
    assert tuned * 4 < default, f"the collector ran {default:.3f} s at the default thresholds, {tuned:.3f} s tuned"


def test_parsing_yaml_runs_no_collection_and_leaves_the_collector_as_it_was(tmp_path: Path) -> None:
    """yamlfile.parse pauses the collector (its nodes and values hold no cycles) and puts it back, on error too."""
    text = yaml.safe_dump(_bench().inventory(1_000), sort_keys=False)
    runs: list[int] = []

    def count(phase: str, info: dict[str, Any]) -> None:
        runs.append(info["generation"]) if phase == "start" else None

    gc.callbacks.append(count)
    try:
        yamlfile.parse(text, tmp_path / "inventory.yml")
    finally:
        gc.callbacks.remove(count)
    # At most the one the allocations since the pause start when it ends (unpaused: one per 700).
    assert len(runs) <= 1 and gc.isenabled(), f"{len(runs)} collections while parsing"
    with pytest.raises(InputError):
        yamlfile.parse("a: 1\na: 2\n", tmp_path / "dup.yml")
    assert gc.isenabled()
    gc.disable()
    try:
        yamlfile.parse("a: 1\n", tmp_path / "one.yml")
        assert not gc.isenabled()
    finally:
        gc.enable()
