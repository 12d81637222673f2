"""Temporal's limits in code (temporal/limits.py), and the start input refused over the payload budget before
the server is asked (temporal/client.check_start, called by client.start)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from temporalio.client import Client
from temporalio.service import RPCError

from tests.temporal_server import DevServer
from tests.unit.test_plan_ops import case_plan
from upgrader.temporal import client as temporal
from upgrader.temporal import limits
from upgrader.temporal.messages import Start


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


def start_of(plan_text: str, hosts: int = 3) -> Start:
    return Start(
        run_id="20261201T000000Z-app-beef",
        plan=plan_text,
        operator="pytest@ctl",
        artifacts="/srv/artifacts",
        run_start={"hosts": [f"h{i}" for i in range(hosts)]},
    )


def test_a_planner_case_start_fits_and_its_size_is_what_the_client_sends(temporal_server: DevServer) -> None:
    async def size() -> int:
        return temporal.check_start(
            await Client.connect(temporal_server.address), start_of(case_plan("multi_hop").to_json())
        )

    measured = asyncio.run(size())
    assert 0 < measured <= limits.PAYLOAD_BUDGET


@pytest.mark.reliability(
    "apply --engine temporal with a start input the server would refuse: 1.9 MiB (at its 2 MiB blob limit once "
    "encoded with the request) and 3 MiB (over it, and near gRPC's 4 MiB message once encoded)",
    "refused by the client in one line naming the size and the limit; no workflow is started",
)
@pytest.mark.parametrize("kib", [1900, 3 * 1024])
def test_a_start_over_the_budget_is_refused_before_the_server_is_asked(
    kib: int, temporal_server: DevServer, record_property: Callable[[str, object], None]
) -> None:
    wid = f"test-oversized-{kib}"

    async def go() -> tuple[str, str]:
        client = await Client.connect(temporal_server.address)
        with pytest.raises(limits.PayloadTooLarge) as refused:
            await temporal.start(client, wid, start_of("x" * (kib * 1024), hosts=300))
        try:
            await client.get_workflow_handle(wid).describe()
            started = "a workflow was started"
        except RPCError as exc:
            started = f"describe {wid}: {exc.status.name if exc.status else exc}"
        return refused.value.message, started

    message, started = asyncio.run(go())
    record_property("observed", f"{kib} KiB plan: refused with {message!r}; {started}")
    assert "\n" not in message and "1.8 MiB budget" in message and "300 hosts" in message
    assert "NOT_FOUND" in started


def test_a_start_over_the_payload_budget_is_warned_not_refused(
    temporal_server: DevServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """600 KiB: the server only warns, and runs of ~27-108 hosts are that size while the plan is inline."""

    async def size() -> int:
        return temporal.check_start(
            await Client.connect(temporal_server.address), start_of("x" * (600 * 1024), hosts=40)
        )

    assert asyncio.run(size()) > limits.PAYLOAD_BUDGET
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning:" in err and "512 KiB Temporal payload budget" in err
