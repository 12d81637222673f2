"""What the run's workflow history holds at fleet size, and the journal's batches by bytes (issue 27 §1).

The parent `upgrade` workflow's history holds every `hosts` child's input and result: at 1,000 hosts it was
2.32 MB (bench/results/temporal_scale-2026-12-05-1000-af199fc.md), ~1.2 KB per host per pass, so 10,000
hosts would pass the server's 10 MiB warning.  Here the children's inputs and results of a 10,000-host run
are built as the workflows build them and summed (no server, no clock); and a real run on a dev server
with a small limits.RECORD_BATCH_BYTES writes its journal in several `record` activities per flush.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from temporalio.client import Client, WorkflowHandle
from temporalio.converter import DataConverter

from tests.temporal_server import DevServer
from tests.unit.fleets import inventory, plan, playbook
from tests.unit.test_driver_parity import Case, build, by_host_and_phase, run_level, run_local
from upgrader.engine.host_actions import HostRun
from upgrader.engine.policy import RunPolicy
from upgrader.engine.policy_state import pack_hosts, unpack_hosts
from upgrader.models.plan import Plan
from upgrader.temporal import control, limits
from upgrader.temporal.hosts_workflow import tail
from upgrader.temporal.interpreter import batches, json_size
from upgrader.temporal.messages import Hosts, HostsDone, PlanRef, Records, Start
from upgrader.temporal.workflow import chunks
from upgrader.vocabulary import HostState

DCS, PER_DC = 10, 1000


def payload_size(value: Any) -> int:
    """Bytes of ``value`` as the client's default data converter sends it (one Temporal payload)."""
    return int(DataConverter.default.payload_converter.to_payloads([value])[0].ByteSize())


@functools.cache
def fleet_plan() -> Plan:
    return plan(
        playbook(canary={"hosts": DCS}, rollout={"batch": PER_DC}),
        inventory({f"dc{d:02}": [f"dc{d:02}-{i:05}" for i in range(PER_DC)] for d in range(DCS)}),
    )


def fleet_run(packed: bool = True) -> tuple[int, int, int]:
    """A 10,000-host run's children as the parent starts them and gets them back: the canaries, each
    datacenter's phase (in shares of limits.CHILD_HOSTS), then an emergency rollback of every host.  One
    host in 50 fails with its own message (a state group of its own); each host's program says two
    `watch` events, one long.  The bytes of all inputs and results, the passes, the hosts."""
    p = fleet_plan()
    policy = RunPolicy(p, {h.host: HostRun(h) for h in p.hosts}, run_id="r")
    start = Start(
        "20261205T050627Z-riskgw-78e7",
        PlanRef("0" * 64, 10**7, 10**6, 4, "0" * 64),
        "ops@ctl.example.com",
        "/srv/upgrader/artifacts",
        signature="s" * 88,
    )
    for run in policy.hosts.values():
        run.state, run.detail = HostState.STAGED, "staged"
    total, seq, cursor = 0, 10**5, 0

    def child(kind: str, share: list[str], end: Callable[[HostRun], None]) -> int:
        nonlocal seq, cursor
        sent = Hosts(start, kind, share, limits.WINDOW, seq, policy.snapshot(share))
        events: list[list[Any]] = []
        for n, h in enumerate(share):
            run = policy.hosts[h]
            end(run)
            if n % 50 == 7:
                run.state, run.failure = HostState.FAILED, f"check port on {h}: connection refused after 3 tries"
                run.detail = run.failure
            cursor += 2
            events += [[cursor - 1, "target", f"{h}: {run.detail}", h, ""], [cursor, "failure", "x" * 2000, h, ""]]
            seq += 5
        got = HostsDone(policy.snapshot(share), seq, tail(events) if packed else events[-limits.WATCH_EVENTS :], 1)
        if not packed:  # as before: every host's fields, the newest WATCH_EVENTS events
            sent.snapshot["hosts"] = dict(unpack_hosts(sent.snapshot["hosts"]))
            got.snapshot["hosts"] = dict(unpack_hosts(got.snapshot["hosts"]))
        return payload_size(sent) + payload_size(got)

    def upgraded(run: HostRun) -> None:
        run.state, run.detail, run.touched = HostState.DONE, f"on {run.plan.path[-1]}, verified", True

    def back(run: HostRun) -> None:
        run.state, run.detail = HostState.ROLLED_BACK, f"back on {run.plan.from_version}, verified"
        run.failure = ""

    for phase in p.phases:
        for share in chunks(phase.hosts, limits.CHILD_HOSTS):
            total += child("phase", share, upgraded)
    for share in chunks(list(policy.hosts), limits.CHILD_HOSTS):
        total += child("rollback", share, back)
    return total, 2, len(policy.hosts)


def test_a_10000_host_runs_children_stay_well_under_the_parents_history_budget(
    record_property: Callable[[str, str], None],
) -> None:
    """The parent's history holds each child's input and result: at 10,000 hosts, a phase and a rollback
    over every host, their sum stays under half of limits.HISTORY_BYTES_BUDGET, at most
    limits.PARENT_BYTES_PER_HOST_PASS per host per pass (the unpacked form of before: over the budget)."""
    total, passes, hosts = fleet_run()
    before, _, _ = fleet_run(packed=False)
    per_host = total / passes / hosts
    record_property(
        "observed",
        f"{hosts} hosts, {passes} passes: children's inputs and results {total:,} B ({per_host:.0f} B per host "
        f"per pass); unpacked states and {limits.WATCH_EVENTS} events per result: {before:,} B",
    )
    print(f"10,000 hosts: {total:,} B, {per_host:.1f} B/host/pass; before {before:,} B")
    assert total < limits.HISTORY_BYTES_BUDGET / 2, total
    assert per_host <= limits.PARENT_BYTES_PER_HOST_PASS, per_host
    assert before > limits.HISTORY_BYTES_BUDGET  # what the packing saves: the test can fail


FIELDS = st.fixed_dictionaries(
    {
        "state": st.sampled_from(list(HostState)),
        "detail": st.sampled_from(["", "staged", "on 2.0.0, verified", "x → y"]),
        "touched": st.booleans(),
        "failure": st.sampled_from(["", "boom", "check: refused"]),
        "unhealthy": st.booleans(),
    }
)


@given(st.dictionaries(st.text(min_size=1, max_size=12), FIELDS, max_size=40))
@settings(max_examples=200, deadline=None)
def test_packed_host_states_come_back_as_they_went(states: dict[str, dict[str, Any]]) -> None:
    """Any hosts' fields, packed and through JSON (a Temporal payload), unpack to the same fields, each host
    once; a group per distinct set of fields."""
    packed = json.loads(json.dumps(pack_hosts(states.items())))
    back = list(unpack_hosts(packed))
    assert dict(back) == states and len(back) == len(states)
    assert len(packed) == len({json.dumps(f, sort_keys=True) for f in states.values()})


ENTRY = st.fixed_dictionaries({"event": st.just("host-end"), "host": st.text(max_size=30), "n": st.integers()})


@given(st.lists(ENTRY, max_size=60), st.integers(min_value=20, max_value=2000))
@settings(max_examples=200, deadline=None)
def test_record_batches_keep_order_and_stay_under_the_budget(entries: list[dict[str, Any]], budget: int) -> None:
    """A flush's records cut into batches: all of them, in order, each batch at most ``budget`` bytes of JSON
    unless one record alone is larger."""
    for seq, entry in enumerate(entries, 1):
        entry["seq"] = seq
    found = batches(entries, budget)
    assert [e for b in found for e in b] == entries
    assert all(b for b in found) or found == [[]]
    for b in found:
        assert len(b) == 1 or sum(json_size(e) + 1 for e in b) <= budget


def test_the_last_seq_is_found_past_a_record_larger_than_the_tail_read(tmp_path: Path) -> None:
    """A retried batch is appended only past the journal's last seq, also when the last record is longer
    than the tail first read (a 10,000-host run-start or run-end record is ~1 MB)."""
    path = tmp_path / "journal.jsonl"
    control.append(path, [{"seq": 1, "event": "run-start"}, {"seq": 2, "event": "run-end", "x": "y" * 300_000}])
    assert control.append(path, [{"seq": 2, "event": "run-end"}, {"seq": 3, "event": "note"}]) == 1
    assert [json.loads(line)["seq"] for line in path.read_text().splitlines()] == [1, 2, 3]
    assert os.path.getsize(path) > 300_000


@pytest.mark.reliability(
    "a flush of journal records larger than one `record` activity may carry (limits.RECORD_BATCH_BYTES "
    "lowered to 1,500 B: 20 fake hosts, one failing, on the dev server)",
    "each flush is written by several record activities, none over the budget but a single large record, "
    "in seq order, each record once: the journal is the local driver's",
)
def test_records_go_in_batches_of_at_most_record_batch_bytes(
    tmp_path: Path,
    temporal_server: DevServer,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, str], None],
) -> None:
    from tests.unit.test_temporal_tree import FLEET, WIDE, histories, run_tree

    budget = 1500
    monkeypatch.setattr(limits, "RECORD_BATCH_BYTES", budget)
    case = Case("bytes", FLEET, frozenset({"ch-5"}), "host", rollout={**WIDE, "max_failures": 3})
    local = build(case, tmp_path / "local")
    twin = build(case, tmp_path / "twin")
    found: list[Any] = []

    async def keep(client: Client, handle: WorkflowHandle[Any, Any]) -> None:
        found.extend(await histories(client, handle))

    try:
        code, states, journal = run_local(case, local)
        t_code, t_states, t_journal, _ = run_tree(twin, temporal_server, inspect=keep)
    finally:
        local.close()
        twin.close()
    converter = DataConverter.default.payload_converter
    sizes: list[tuple[int, int]] = []  # (bytes of the batch's records, records) per record activity
    for history in found:
        for e in history.events:
            if not e.HasField("activity_task_scheduled_event_attributes"):
                continue
            attrs = e.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == "record":
                batch = converter.from_payloads(list(attrs.input.payloads), [Records])[0]
                empty = json_size(dataclasses.replace(batch, entries=[]))
                sizes.append((json_size(batch.entries) - 2 + empty, len(batch.entries)))
    over = [s for s in sizes if s[0] > budget and s[1] > 1]
    record_property(
        "observed",
        f"{len(sizes)} record activities, the largest {max(s for s, _ in sizes)} B ({len(over)} over {budget} B "
        f"with more than one record); journal seqs 1..{len(t_journal)} in order: "
        f"{[e['seq'] for e in t_journal] == list(range(1, len(t_journal) + 1))}; exit {t_code} (local {code})",
    )
    assert not over, over
    assert [e["seq"] for e in t_journal] == list(range(1, len(t_journal) + 1))
    assert by_host_and_phase(t_journal) == by_host_and_phase(journal)
    assert run_level(t_journal) == run_level(journal)
    assert (t_code, t_states) == (code, states)


def test_the_parents_history_per_host_on_a_real_run(
    tmp_path: Path, temporal_server: DevServer, record_property: Callable[[str, str], None]
) -> None:
    """A 60-host run (three datacenters, a canary each, then a wave each) on the dev server: the bytes of the
    parent's history per host, and which activities and children hold them (lock, stage, release and
    their journal records; the children's inputs and results).  The datacenter activities' states are
    packed and their facts only what stage reads, so a 10,000-host run's parent stays well under
    limits.HISTORY_BYTES_BUDGET."""
    from tests.unit.test_temporal_tree import run_tree

    fleet = {dc: [f"{dc}-{i:02}" for i in range(20)] for dc in ("ny", "ch", "ld")}
    s = build(Case("sixty", fleet, rollout={"batch": 60, "max_in_flight_per_datacenter": 20}), tmp_path / "sixty")
    found: list[Any] = []

    async def keep(client: Client, handle: WorkflowHandle[Any, Any]) -> None:
        found.append(await handle.fetch_history())

    try:
        code, states, _, _ = run_tree(s, temporal_server, inspect=keep)
    finally:
        s.close()
    parent, hosts = found[0], sum(len(hs) for hs in fleet.values())
    by: dict[str, int] = {}
    scheduled: dict[int, str] = {}
    for e in parent.events:
        if e.HasField("activity_task_scheduled_event_attributes"):
            name = e.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[e.event_id] = name
            by[name] = by.get(name, 0) + e.activity_task_scheduled_event_attributes.input.ByteSize()
        elif e.HasField("activity_task_completed_event_attributes"):
            attrs = e.activity_task_completed_event_attributes
            name = scheduled[attrs.scheduled_event_id]
            by[name] = by.get(name, 0) + attrs.result.ByteSize()
        elif e.HasField("start_child_workflow_execution_initiated_event_attributes"):
            by["hosts"] = (
                by.get("hosts", 0) + e.start_child_workflow_execution_initiated_event_attributes.input.ByteSize()
            )
        elif e.HasField("child_workflow_execution_completed_event_attributes"):
            by["hosts"] = by.get("hosts", 0) + e.child_workflow_execution_completed_event_attributes.result.ByteSize()
    total = sum(e.ByteSize() for e in parent.events)
    per_host = {k: round(v / hosts) for k, v in sorted(by.items())}
    record_property(
        "observed",
        f"exit {code}; parent's history {total:,} B for {hosts} hosts ({total / hosts:.0f} B "
        f"per host): bytes per host by activity/child {per_host}",
    )
    print(f"parent {total} B, {total / hosts:.0f} B/host; {per_host}")
    assert code == 0 and set(states.values()) == {"done"}
    datacenter_work = sum(by.get(k, 0) for k in ("lock", "stage", "unstage", "release"))
    assert datacenter_work / hosts <= limits.DATACENTER_BYTES_PER_HOST, per_host
