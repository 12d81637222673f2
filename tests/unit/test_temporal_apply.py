"""`upgrader apply --engine temporal` end to end, as an operator runs it: the CLI stores the plan in the artifact
store and starts the workflow by its reference; the real workers (in a thread here) run it on fake hosts.

The hosts are the fake agent hosts of tests/fakes (the real agent on a directory tree); the controller's
own connections (facts, artifact checks) reach them through ``live.pool_for``, the workers' through their
Pool's transport factory.  Nothing leaves loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tests.fakes.scenario import FROM, TO, Scenario
from tests.temporal_harness import fleet_workers
from tests.temporal_server import DevServer
from upgrader.cli.main import main
from upgrader.commands import live
from upgrader.journal import read
from upgrader.loading.inputs import load_inventory
from upgrader.temporal import plan_store

KEY = b"test-plan-key-0123456789abcdef"


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scenario]:
    s = Scenario.build(tmp_path, {"ny": ["ny-1", "ny-2"], "ch": ["ch-1"]})
    monkeypatch.setattr(live, "pool_for", lambda *a, **k: s.hosts.pool())
    yield s
    s.close()


@contextlib.contextmanager
def workers(server: DevServer, s: Scenario, state: Path, artifacts: Path | None = None) -> Iterator[None]:
    """The datacenter workers and the control worker, polling in a thread until the block ends."""
    stop = threading.Event()
    ready = threading.Event()
    inventory = load_inventory(s.inventory)

    async def serve() -> None:
        client = await Client.connect(server.address)
        factory = s.hosts.pool()._factory
        async with fleet_workers(client, inventory, state, factory, artifacts=artifacts, control_artifacts=artifacts):
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(30), "the workers did not start"
    try:
        yield
    finally:
        stop.set()
        thread.join(60)


def apply(server: DevServer, s: Scenario, state: Path) -> int:
    key = s.tmp / "plan.key"
    key.write_bytes(KEY)
    return main(
        [
            "--state-dir",
            str(state),
            "apply",
            str(s.playbook),
            "-i",
            str(s.inventory),
            "--artifacts",
            str(s.artifacts),
            "--yes",
            "--log-format",
            "plain",
            "--engine",
            "temporal",
            "--temporal-address",
            server.address,
            "--plan-key",
            str(key),
        ]
    )


def test_apply_stores_the_plan_and_the_workers_run_it_by_reference(
    fleet: Scenario, temporal_server: DevServer, capsys: pytest.CaptureFixture[str]
) -> None:
    state = fleet.tmp / "state"
    with workers(temporal_server, fleet, state):
        code = apply(temporal_server, fleet, state)
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert set(fleet.versions().values()) == {TO}
    stored = sorted((fleet.artifacts / "plans").iterdir())
    assert len(stored) == 1 and stored[0].name.endswith(".json.gz")
    (run,) = sorted((state / "runs").iterdir())
    plan = json.loads((run / "plan.json").read_text())
    text = plan_store.text_of(fleet.plan)
    assert stored[0].name == plan_store.store(fleet.artifacts, text).sha256 + ".json.gz"
    assert plan["content_hash"] == fleet.plan.content_hash
    first = dict(next(iter(read(run / "journal.jsonl"))).fields)
    assert first["event"] == "run-start" and first["hosts"] == [h.host for h in fleet.plan.hosts]


@pytest.mark.reliability(
    "apply --engine temporal with datacenter and control workers whose own artifact store (worker --artifacts) "
    "does not hold the plan the controller stored",
    "the run is refused (exit 1) before any host is locked or changed, in one line naming the path the "
    "workers looked in and how to put the plan there",
)
def test_workers_without_the_stored_plan_refuse_the_run_and_say_where_it_should_be(
    fleet: Scenario,
    temporal_server: DevServer,
    capsys: pytest.CaptureFixture[str],
    record_property: Any,
) -> None:
    state = fleet.tmp / "state"
    elsewhere = fleet.tmp / "worker-artifacts"
    elsewhere.mkdir()
    with workers(temporal_server, fleet, state, artifacts=elsewhere):
        code = apply(temporal_server, fleet, state)
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1] if err.strip() else ""
    record_property(
        "observed", f"exit {code}; hosts at {sorted(set(map(str, fleet.versions().values())))}; stderr: {last[:300]}"
    )
    assert code == 1 and set(fleet.versions().values()) == {FROM}
    assert str(elsewhere / "plans") in err and "--artifacts" in err
