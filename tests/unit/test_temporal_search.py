"""Runs found from any controller: search attributes set at start, upserted as the run goes, listed by
`upgrader runs --engine temporal` (a visibility query on the session's dev server, which registers them).

Two controllers (two state directories) start one run each through client.start, as `apply --engine
temporal` does; the workers are the real ones with the fake agent (as test_temporal_workflow).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from temporalio.client import Client, WorkflowHandle

from tests.temporal_harness import fleet_workers
from tests.temporal_server import DevServer
from tests.unit.test_plan_ops import CASES, Agent, case_plan
from tests.unit.test_temporal_workflow import KEY, Transport, decision, journal_has, quick, signed
from upgrader.cli.main import main
from upgrader.engine import remote
from upgrader.engine.gates import DecisionKind
from upgrader.engine.host_actions import HostActions
from upgrader.loading.inputs import load_inventory
from upgrader.temporal import client as temporal
from upgrader.temporal import plan_store, search, settings
from upgrader.temporal.messages import PlanRef, Start
from upgrader.temporal.search import Labels
from upgrader.vocabulary import Event

Steer = Callable[[WorkflowHandle[Any, Any], Path], Awaitable[None]]


def listed(server: DevServer, state: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """`upgrader runs --engine temporal --format json`, from the controller whose state directory is ``state``."""
    argv = ["--state-dir", str(state), "runs", "--engine", "temporal", "--temporal-address", server.address]
    capsys.readouterr()
    assert main([*argv, "--format", "json"]) == 0
    found: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return found


async def until_listed(
    server: DevServer, state: Path, capsys: pytest.CaptureFixture[str], run: str, status: str
) -> dict[str, Any]:
    """Visibility is eventually consistent: ask until the run shows with ``status`` (at most 30 s)."""
    seen: list[dict[str, Any]] = []
    for _ in range(150):
        seen = await asyncio.to_thread(listed, server, state, capsys)
        mine = [r for r in seen if r["run"] == run]
        if mine and mine[0]["status"] == status:
            return mine[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"run {run} never listed as {status}: {seen}")


def controller_run(
    server: DevServer,
    case: str,
    tmp: Path,
    controller: str,
    monkeypatch: pytest.MonkeyPatch,
    steer: Steer | None = None,
) -> tuple[str, dict[str, Any]]:
    """One run started by ``controller`` as `apply --engine temporal` starts it (client.start with labels)."""
    plan = quick(case_plan(case))
    agent = Agent(plan)
    # HostActions calls the session's method, not the module's remote.call
    monkeypatch.setattr(remote.Session, "call", lambda session, **kw: agent(session, **kw))
    monkeypatch.setattr(HostActions, "check_artifacts", lambda self: None)
    inventory = load_inventory(CASES / case / "inventory.yml")
    run_id = f"20261201T000000Z-{plan.component}-{secrets.token_hex(3)}"
    desk = tmp / "worker-state"  # the control worker's journals: the desk's, shared by the controllers

    async def go() -> dict[str, Any]:
        client = await Client.connect(server.address)
        async with fleet_workers(client, inventory, desk, Transport, plan_key=KEY):
            store = tmp / "artifacts"
            store.mkdir(exist_ok=True)
            start = signed(
                Start(
                    run_id=run_id,
                    plan=plan_store.store(store, plan_store.text_of(plan)),
                    operator=f"{controller}@desk",
                    artifacts=str(store),
                    run_start={"seq": 1, "event": "run-start", "kind": "apply", "run": run_id, "engine": "temporal"},
                )
            )
            dcs = sorted({h.datacenter for h in plan.hosts})
            labels = Labels(run_id, plan.component, plan.target_version, dcs, start.operator)
            handle = await temporal.start(client, f"test-{controller}-{run_id}", start, labels)
            if steer is not None:
                await steer(handle, desk / "runs" / run_id / "journal.jsonl")
            result: dict[str, Any] = await handle.result()
            return result

    return run_id, asyncio.run(go())


def test_runs_lists_every_controllers_runs_with_their_phase_and_status(
    temporal_server: DevServer, in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = in_tmp / "controller-a", in_tmp / "controller-b"
    first, outcome = controller_run(temporal_server, "two_dcs_order_pause", in_tmp, "a", monkeypatch)
    assert outcome["exit_code"] == 0, outcome
    gate = next(p.gate.id for p in case_plan("manual_gates").phases if p.gate is not None)
    seen: dict[str, Any] = {}

    async def at_the_gate(handle: WorkflowHandle[Any, Any], journal: Path) -> None:
        await journal_has(journal, lambda es: any(e["event"] == "gate-wait" for e in es))
        # from controller a's state directory: b's run, waiting at its gate, and a's, finished
        seen["waiting"] = await until_listed(temporal_server, a, capsys, journal.parent.name, search.WAITING)
        seen["first"] = await until_listed(temporal_server, a, capsys, first, "succeeded")
        await handle.signal("decide", decision(DecisionKind.ABORT, reason="seen"))

    second, outcome = controller_run(temporal_server, "manual_gates", in_tmp, "b", monkeypatch, steer=at_the_gate)
    assert outcome["status"] == "aborted", outcome
    waiting = seen["waiting"]
    assert (waiting["run"], waiting["component"], waiting["operator"]) == (second, "app", "b@desk")
    assert waiting["phase"] == f"gate {gate}" and waiting["datacenters"] and waiting["version"]
    assert seen["first"]["phase"] == "ended" and seen["first"]["operator"] == "a@desk"
    # from controller b's state directory, after the end: both runs, in the order they started
    assert asyncio.run(until_listed(temporal_server, b, capsys, second, "aborted"))["phase"] == "ended"
    everything = [r["run"] for r in listed(temporal_server, b, capsys)]
    assert everything.index(first) < everything.index(second)
    # neither controller's own state directory holds either run: only the server could list them
    assert main(["--state-dir", str(a), "runs"]) == 0
    assert first not in capsys.readouterr().out


def test_a_run_started_without_search_attributes_upserts_none(
    temporal_server: DevServer, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server without them registered, or a run started by an older controller: the workflow must not
    upsert what the server would refuse (a workflow task failing forever)."""
    from tests.unit.test_temporal_workflow import run_workflow

    _, outcome, entries, _ = run_workflow(temporal_server, "two_dcs_order_pause", in_tmp, monkeypatch)
    assert outcome["exit_code"] == 0 and entries[-1]["event"] == "run-end"


def test_every_attribute_is_registered_in_the_dev_server_as_the_operator_is_told() -> None:
    pairs = dict(p.split("=") for p in search.registration())
    assert pairs == {
        "UpgraderComponent": "Keyword",
        "UpgraderVersion": "Keyword",
        "UpgraderDatacenters": "KeywordList",
        "UpgraderPhase": "Keyword",
        "UpgraderStatus": "Keyword",
        "UpgraderOperator": "Keyword",
    }


@examples(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # a loaded CI machine draws slowly
@given(
    event=st.sampled_from(list(Event)),
    data=st.dictionaries(
        st.sampled_from(["phase", "kind", "datacenter", "gate", "status", "host"]),
        st.one_of(st.none(), st.integers(0, 10_000), st.text(max_size=40)),
        max_size=6,
    ),
)
def test_each_update_is_a_known_attribute_of_a_value_under_the_servers_limit(
    event: Event, data: dict[str, Any]
) -> None:
    """Journal records are the workflow's own data; whatever they hold, an upsert names only our keys and
    stays under the server's 2 KiB per value (limits.SEARCH_ATTRIBUTE_VALUE)."""
    from upgrader.temporal import limits

    if event == Event.PHASE_BEGIN and not isinstance(data.get("phase", 0), int):
        data["phase"] = 0  # the workflow records an int index
    for update in search._updates(event, data):
        assert update.key in (search.PHASE, search.STATUS)
        assert len(str(update.value).encode()) <= limits.SEARCH_ATTRIBUTE_VALUE


def test_the_settings_flags_are_also_on_runs() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    assert parser.parse_args(["--temporal-address", "h:1"]).temporal_address == "h:1"


@pytest.mark.reliability(
    "apply --engine temporal and runs --engine temporal against a server without the search attributes "
    "registered (a fresh dev server)",
    "the run starts without them, with a warning naming the commands that register them; runs --engine "
    "temporal is refused (exit 1) with the same commands as its hint",
)
def test_a_server_without_the_attributes_still_runs_upgrades_and_says_how_to_register_them(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    record_property: Callable[[str, object], None],
) -> None:
    bare = DevServer(tmp_path, search_attributes=False)
    bare.start()
    try:
        run_id = "20261201T000000Z-app-0bad"
        start = Start(
            run_id=run_id, plan=PlanRef("0" * 64, 2, 22, 1, "1" * 64), operator="pytest@ctl", artifacts=str(tmp_path)
        )
        labels = Labels(run_id, "app", "2.0.0", ["ny5"], "pytest@ctl")

        async def go() -> tuple[str, Any]:
            client = await Client.connect(bare.address)
            handle = await temporal.start(client, "test-bare", start, labels)  # no worker: it only waits
            info = await handle.describe()
            await handle.terminate("test over")
            return handle.id, info.typed_search_attributes.get(search.COMPONENT)

        wid, component = asyncio.run(go())
        warned = capsys.readouterr().err
        code = main(["--state-dir", str(tmp_path), "runs", "--engine", "temporal", "--temporal-address", bare.address])
        refused = capsys.readouterr().err
    finally:
        bare.stop()
    record_property(
        "observed",
        f"started {wid} (component attribute {component!r}); warning: {warned.strip()[:160]!r}; "
        f"runs --engine temporal: exit {code}, {refused.strip()[:160]!r}",
    )
    assert component is None and "warning: the Temporal server refused the run's search attributes" in warned
    assert "search-attribute create --name UpgraderDatacenters --type KeywordList" in warned
    assert code == 1 and "search-attribute create --name UpgraderComponent --type Keyword" in refused
