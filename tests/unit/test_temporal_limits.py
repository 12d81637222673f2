"""Temporal's limits in code (temporal/limits.py), and the start input refused over the payload budget before
the server is asked (temporal/client.check_start, called by client.start)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from temporalio import converter
from temporalio.client import Client
from temporalio.service import RPCError

from tests.temporal_server import DevServer
from upgrader.temporal import client as temporal
from upgrader.temporal import limits, plan_store
from upgrader.temporal.messages import PlanRef, Start

REPO = Path(__file__).resolve().parents[2]


def test_the_limits_are_temporals_defaults_as_the_issue_read_them() -> None:
    assert (limits.BLOB_WARN, limits.BLOB_ERROR) == (512 * 1024, 2 * 1024 * 1024)
    assert (limits.HISTORY_EVENTS_WARN, limits.HISTORY_EVENTS_ERROR) == (10_240, 51_200)
    assert (limits.HISTORY_BYTES_WARN, limits.HISTORY_BYTES_ERROR) == (10 * 1024 * 1024, 50 * 1024 * 1024)
    assert limits.PENDING_ACTIVITIES_ERROR == limits.PENDING_CHILDREN_ERROR == 2000
    assert (
        limits.PENDING_BUDGET < 1001 and limits.QUERY_BUDGET == 1024 * 1024 and limits.GRPC_MESSAGE == 4 * 1024 * 1024
    )
    # each budget under the limit it guards, with margin
    assert limits.PAYLOAD_BUDGET <= limits.BLOB_WARN < limits.BLOB_ERROR < limits.GRPC_MESSAGE
    assert limits.QUERY_BUDGET < limits.BLOB_ERROR
    assert limits.HISTORY_EVENTS_BUDGET <= limits.HISTORY_EVENTS_WARN < limits.HISTORY_EVENTS_ERROR


@examples(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(0, 64 * 1024 * 1024), budget=st.integers(1, 8 * 1024 * 1024))
def test_a_payload_is_refused_exactly_when_over_its_budget_in_one_line(size: int, budget: int) -> None:
    try:
        limits.check_payload("the thing", size, "make it smaller", budget)
    except limits.PayloadTooLarge as exc:
        assert size > budget
        assert "\n" not in exc.message and exc.message.startswith("the thing is ")
        assert "nothing was started" in exc.message and exc.hint == "make it smaller"
    else:
        assert size <= budget


REF = PlanRef("ab" * 32, 1_598_205, 81_100, 1, "cd" * 32)  # a 10,000-host inventory's plan (bench/plan_10k.py)


def start_of(run_start: dict[str, object] | None = None) -> Start:
    return Start(
        run_id="20261201T000000Z-app-beef",
        plan=REF,
        operator="pytest@ctl",
        artifacts="/srv/artifacts",
        run_start=run_start or {},
    )


@pytest.mark.reliability(
    "apply --engine temporal with a start input over the 512 KiB payload budget (a run-start record padded "
    "to 600 KiB and 3 MiB: the plan itself travels by reference)",
    "refused by the client in one line naming the size and the budget; no workflow is started",
)
@pytest.mark.parametrize("kib", [600, 3 * 1024])
def test_a_start_over_the_budget_is_refused_before_the_server_is_asked(
    kib: int, temporal_server: DevServer, record_property: Callable[[str, object], None]
) -> None:
    wid = f"test-oversized-{kib}"

    async def go() -> tuple[str, str]:
        client = await Client.connect(temporal_server.address)
        with pytest.raises(limits.PayloadTooLarge) as refused:
            await temporal.start(client, wid, start_of({"argv": ["x" * (kib * 1024)]}))
        try:
            await client.get_workflow_handle(wid).describe()
            started = "a workflow was started"
        except RPCError as exc:
            started = f"describe {wid}: {exc.status.name if exc.status else exc}"
        return refused.value.message, started

    message, started = asyncio.run(go())
    record_property("observed", f"{kib} KiB start: refused with {message!r}; {started}")
    assert "\n" not in message and "512 KiB budget" in message and message.startswith("the run's start input is")
    assert "NOT_FOUND" in started


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("plan_10k", REPO / "bench" / "plan_10k.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_start_input_of_a_10000_host_inventory_is_a_few_kib(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """As `apply --engine temporal` makes it (durable.make_start): the plan stored, the start naming it."""
    import yaml

    from upgrader.commands.durable import make_start
    from upgrader.commands.inputs import load_inputs
    from upgrader.engine import admission
    from upgrader.planning.planner import facts_from_inventory, make_plan
    from upgrader.temporal.settings import Settings
    from upgrader.windows import evaluate

    bench = _bench()
    inventory_path, playbook_path = tmp_path / "inventory.yml", tmp_path / "ordergw.yml"
    inventory_path.write_text(yaml.safe_dump(bench.inventory(10_000), sort_keys=False), encoding="utf-8")
    playbook_path.write_text(bench.playbook(bench.PLAYBOOK.read_text(encoding="utf-8")), encoding="utf-8")
    inputs = load_inputs(playbook_path, inventory_path)
    pb, inv = inputs.playbook.model, inputs.inventory.model
    plan = make_plan(
        pb, inv, facts_from_inventory(inv), playbook_ref=inputs.playbook_ref(), inventory_ref=inputs.inventory_ref()
    )
    store = tmp_path / "artifacts"
    store.mkdir()
    args = argparse.Namespace(
        now=None,
        inventory=inventory_path,
        artifacts=store,
        break_lock=None,
        python="python3",
        overrides=None,
        state_dir=tmp_path / "state",
    )
    verdict = evaluate(plan.spec, inv, admission.datacenters(plan), datetime.now(UTC))
    _wid, start = make_start(args, plan, inv, verdict, Settings("127.0.0.1:7233"), b"k" * 32)
    size = temporal.check_start(SimpleNamespace(data_converter=converter.default()), start)  # type: ignore[arg-type]
    stored = plan_store.path_of(store, start.plan)
    record_property(
        "observed",
        f"{len(plan.hosts)} planned hosts of 10,000: start input {size} bytes; plan stored as {stored.name}, "
        f"{start.plan.size} bytes compact, {start.plan.gz_size} gzipped, {start.plan.parts} part(s)",
    )
    assert plan_store.read(store, start.plan) == plan_store.text_of(plan)
    assert len(plan.hosts) > 2000 and start.plan.parts == 1
    assert size < 4 * 1024, size  # a few KiB: the hosts are named by the plan, not the start
