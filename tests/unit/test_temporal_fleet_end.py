"""The end of a 10,000-host Temporal run under the payload budget (issue 27 §1): the run-end record the run's
workflow sends the control worker, and the workflow's result (also in its `progress` answers).

Both named every host with its fields (~100 B a host): at 10,000 hosts the run-end record's `record` activity
input was ~1 MB and the result ~0.6 MB, over limits.PAYLOAD_BUDGET.  Now both are packed (temporal/packed.py)
and the control worker expands the run-end's hosts, so the journal line is the one it always was.  Built here
as the workflow builds them (no server, no clock), and the control worker's `record` activity called directly
on a real Control over a tmp state directory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.testing import ActivityEnvironment

from tests.unit.conftest import INVENTORY
from tests.unit.test_temporal_bytes import fleet_plan
from upgrader.engine.host_actions import HostRun
from upgrader.engine.policy import RunPolicy
from upgrader.engine.policy_messages import Record
from upgrader.engine.verdict import Outcome, verdict
from upgrader.journal import JOURNAL, runs_dir
from upgrader.loading.inputs import load_inventory
from upgrader.temporal import limits, packed
from upgrader.temporal.control import Control
from upgrader.temporal.interpreter import batches, json_size
from upgrader.temporal.messages import PlanRef, Records, Start
from upgrader.temporal.workflow import UpgradeWorkflow, result, run_end
from upgrader.vocabulary import Event, HostState

RUN = "20261205T050627Z-riskgw-78e7"
ARTIFACTS = "/srv/upgrader/artifacts"
AT = "2026-12-05T05:06:27.000+00:00"


@functools.cache
def fleet_end() -> tuple[RunPolicy, Outcome, dict[str, Any]]:
    """A 10,000-host run in 10 datacenters at its end: every host upgraded, one in 50 failed with its own
    message (a group of its own).  The policy, its verdict and its run-end record's fields."""
    p = fleet_plan()
    policy = RunPolicy(p, {h.host: HostRun(h) for h in p.hosts}, run_id=RUN)
    for n, run in enumerate(policy.hosts.values()):
        run.touched = True
        if n % 50 == 7:
            run.state, run.failure = HostState.FAILED, f"check port on {run.name}: connection refused after 3 tries"
            run.detail = run.failure
            policy.count(run.name)
        else:
            run.state, run.detail = HostState.DONE, f"on {run.plan.path[-1]}, verified"
    code, status, message = verdict(
        policy.hosts, held=False, failures=policy.failures, aborted=False, halted=None, target=p.target_version
    )
    outcome, last = policy.closing(Outcome(code, status, message, policy.hosts), [])
    (end,) = [a.fields for a in last if isinstance(a, Record) and a.event == Event.RUN_END]
    return policy, outcome, dict(end)


def record_batches(fields: dict[str, Any]) -> list[Records]:
    """The run-end as the parent's flush sends it: queued with its seq and time, cut by interpreter.batches."""
    entry = {"seq": 10**6, "at": AT, "event": Event.RUN_END, **fields}
    room = limits.RECORD_BATCH_BYTES - json_size(Records(RUN, [], None, ARTIFACTS))
    return [Records(RUN, batch, None, ARTIFACTS) for batch in batches([entry], room)]


def progress_answer(outcome: dict[str, Any], policy: RunPolicy) -> dict[str, Any]:
    """The run's workflow's `progress` answer once it ended, from the start (what `status` asks first): the
    result, the first limits.PROGRESS_HOSTS hosts and the newest limits.WATCH_EVENTS events, each text
    clipped to limits.EVENT_TEXT as a child's are."""
    wf = UpgradeWorkflow()
    wf.start = Start(RUN, PlanRef("0" * 64, 10**7, 10**6, 4, "0" * 64), "ops@ctl.example.com", ARTIFACTS)
    wf.hosts = policy.hosts
    for host in policy.hosts:
        wf.touch(host)
    for n in range(limits.WATCH_EVENTS):
        wf.event("failure", "x" * limits.EVENT_TEXT, f"dc00-{n:05}", source=f"upgrade-riskgw-prod/hosts-{n % 11}", at=n)
    wf.outcome = outcome
    answer: dict[str, Any] = wf.progress(0)
    return answer


def test_a_10000_host_runs_end_stays_under_the_payload_budget(record_property: Callable[[str, str], None]) -> None:
    """The run-end `record` activity's input and the workflow's result of a 10,000-host run in 10 datacenters
    (one host in 50 failed with its own message), as the workflow builds them: each under
    limits.PAYLOAD_BUDGET, and the ended run's `progress` answer under limits.QUERY_BUDGET.  Unpacked, as
    before, the run-end batch is over the payload budget (what the packing saves: the test can fail)."""
    policy, outcome, end = fleet_end()
    sent = record_batches(run_end(end))
    before = record_batches({**end, "handshake_retries": 0, "engine": "temporal"})
    got = result(int(outcome.exit_code), outcome.status, outcome.message, policy.hosts.values())
    old = {**{k: v for k, v in got.items() if k != packed.ROWS_PACKED}, "rows": [list(r) for r in packed.rows_of(got)]}
    batch, old_batch = max(json_size(b) for b in sent), max(json_size(b) for b in before)
    answer, old_answer = progress_answer(got, policy), progress_answer(old, policy)
    hosts, groups = len(policy.hosts), len(got[packed.ROWS_PACKED])
    record_property(
        "observed",
        f"{hosts} hosts, {policy.failures} failed with their own message: run-end record batch {batch:,} B "
        f"({len(sent)} activity; unpacked {old_batch:,} B), result {json_size(got):,} B in {groups} row groups "
        f"(unpacked {json_size(old):,} B), ended run's progress answer {json_size(answer):,} B "
        f"(unpacked {json_size(old_answer):,} B); budgets {limits.PAYLOAD_BUDGET:,} B payload, "
        f"{limits.QUERY_BUDGET:,} B query",
    )
    print(f"run-end {batch:,} B (before {old_batch:,}); result {json_size(got):,} B (before {json_size(old):,})")
    assert len(sent) == 1 and batch <= limits.PAYLOAD_BUDGET, batch
    assert json_size(got) <= limits.PAYLOAD_BUDGET
    assert json_size(answer) <= limits.QUERY_BUDGET
    assert old_batch > limits.PAYLOAD_BUDGET  # the unpacked run-end of before: over the budget
    # What the control worker writes from it is the unpacked record, and what `watch` shows the unpacked rows.
    wire = json.loads(json.dumps(sent[0].entries[0]))
    assert packed.expand_record(wire) == json.loads(json.dumps(before[0].entries[0]))
    assert packed.rows_of(json.loads(json.dumps(got))) == [
        (h.name, h.plan.datacenter, str(h.state), h.detail) for h in grouped_rows(policy)
    ]


def grouped_rows(policy: RunPolicy) -> list[HostRun]:
    """The hosts in the order packed rows come back: grouped by (datacenter, state, detail), each group where
    its first host was, its hosts in their own order."""
    groups: dict[tuple[str, str, str], list[HostRun]] = {}
    for h in policy.hosts.values():
        groups.setdefault((h.plan.datacenter, str(h.state), h.detail), []).append(h)
    return [h for hs in groups.values() for h in hs]


# ---------------------------------------------------------------- the control worker's expansion

NAMES = st.one_of(st.sampled_from(["ny-1", "ny-2", "ch-1", "", "é"]), st.text(max_size=12))
AT_END = st.fixed_dictionaries(
    {
        "state": st.one_of(st.sampled_from(list(HostState)), st.text(max_size=8)),
        "detail": st.one_of(st.sampled_from(["", "on 2.0.0, verified", "boom"]), st.text(max_size=30)),
        "version": st.one_of(st.none(), st.sampled_from(["1.0.0", "2.0.0"]), st.text(max_size=6)),
    }
)
HOSTS = st.dictionaries(NAMES, AT_END, max_size=40)


def end_entry(hosts: dict[str, Any], seq: int = 2) -> dict[str, Any]:
    fields = {"status": "failed", "exit_code": 3, "message": "1 host failed", "resumable": False, "hosts": hosts}
    return {"seq": seq, "at": AT, "event": Event.RUN_END, **fields}


def wire(value: Any) -> Any:
    """As a Temporal payload carries it (JSON)."""
    return json.loads(json.dumps(value))


@given(HOSTS)
@settings(max_examples=300, deadline=None)
def test_packed_run_end_hosts_expand_to_the_same_map(hosts: dict[str, Any]) -> None:
    """Any hosts' run-end fields, packed as the workflow sends them and through JSON, come back from the control
    worker's expansion as the very same record (no ``hosts_packed`` left)."""
    entry = end_entry(hosts)
    sent = wire({**{k: v for k, v in entry.items() if k != "hosts"}, **packed.pack_run_end(entry)})
    assert "hosts" not in sent
    assert packed.expand_record(sent) == wire(entry)


class Journals:
    """A real Control on a tmp state directory; each new run begun by its run-start as execution E1."""

    def __init__(self, state: Path) -> None:
        self.control = Control(state, load_inventory(INVENTORY))
        self.state = state
        self.runs = itertools.count(1)

    def write(self, run: str, entries: list[dict[str, Any]]) -> int:
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, workflow_run_id="E1")
        written: int = asyncio.run(env.run(self.control.record, Records(run, wire(entries))))
        return written

    def begin(self) -> str:
        run = f"20261205T000000Z-riskgw-{next(self.runs):05}"
        start = {"seq": 1, "at": AT, "event": "run-start", "kind": "apply", "execution": "E1"}
        assert self.write(run, [start]) == 1
        return run

    def journal(self, run: str) -> bytes:
        return (runs_dir(self.state) / run / JOURNAL).read_bytes()


@given(hosts=HOSTS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_record_activity_writes_the_same_line_packed_or_not(
    hosts: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The control worker's `record` activity (a real Control, called directly): a run-end with its hosts
    packed and the same run-end unpacked (as older workflow code sends it) give byte for byte the same
    journal line."""
    journals = Journals(tmp_path_factory.mktemp("state"))
    entry = end_entry(hosts)
    sent = {**{k: v for k, v in entry.items() if k != "hosts"}, **packed.pack_run_end(entry)}
    lines = []
    for form in (sent, entry):
        run = journals.begin()
        assert journals.write(run, [form]) == 1
        lines.append(journals.journal(run).splitlines()[-1])
    assert lines[0] == lines[1]
    assert json.loads(lines[0])["hosts"] == wire(hosts)


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=6))
FIELDS = st.fixed_dictionaries({"state": st.sampled_from(["done", "failed"]), "detail": st.text(max_size=8)})
BROKEN = (
    "not a list",
    "a group not [fields, hosts]",
    "fields not an object",
    "hosts not a list",
    "a host not a string",
    "a host twice",
    "a field of the wrong type",
    "beside 'hosts'",
    "on another event",
)


@st.composite
def broken_end(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A run-end record with a malformed ``hosts_packed`` (or one where it does not belong), the kind."""
    kind = draw(st.sampled_from(BROKEN))
    good = packed.pack_run_end(end_entry(draw(HOSTS)))["hosts_packed"]
    host = draw(NAMES)
    bad: Any
    if kind == "not a list":
        bad = draw(st.one_of(SCALARS, st.dictionaries(st.text(max_size=4), SCALARS, max_size=3)))
    elif kind == "a group not [fields, hosts]":
        bad = draw(st.one_of(SCALARS, st.lists(SCALARS, max_size=4), st.tuples(FIELDS, st.just([host]), SCALARS)))
    elif kind == "fields not an object":
        bad = [draw(st.one_of(SCALARS, st.lists(SCALARS, max_size=3))), [host]]
    elif kind == "hosts not a list":
        bad = [draw(FIELDS), draw(st.one_of(SCALARS, st.dictionaries(st.text(max_size=4), SCALARS, max_size=3)))]
    elif kind == "a host not a string":
        bad = [draw(FIELDS), [host, draw(st.one_of(st.none(), st.booleans(), st.integers(), st.lists(SCALARS)))]]
    elif kind == "a host twice":
        good = [g for g in good if host not in g[1]]
        bad = [draw(FIELDS), [host]]
        good.insert(draw(st.integers(0, len(good))), [draw(FIELDS), [host]])
    else:
        bad = [{"state": draw(st.one_of(st.integers(), st.booleans(), st.lists(SCALARS, max_size=2)))}, [host]]
    if kind == "not a list":
        packed_hosts = bad
    elif kind in ("beside 'hosts'", "on another event"):
        packed_hosts = good  # well formed, where it does not belong
    else:  # among well-formed groups, anywhere: nothing before it may be half-used
        packed_hosts = [*good]
        packed_hosts.insert(draw(st.integers(0, len(good))), list(bad) if isinstance(bad, tuple) else bad)
    entry = {k: v for k, v in end_entry({}, seq=3).items() if k != "hosts"}
    entry["hosts_packed"] = packed_hosts
    if kind == "beside 'hosts'":
        entry["hosts"] = {}
    elif kind == "on another event":
        entry["event"] = draw(st.sampled_from([Event.HALT, Event.RUN_START, Event.RESUME]))
    return kind, entry


SEEN: dict[str, int] = {}


@pytest.mark.reliability(
    "a `record` activity input whose run-end carries a malformed 'hosts_packed' (not groups of [fields, "
    "[host, ...]], a host twice or not a string, a field of the wrong type, beside 'hosts', on another event), "
    "after a valid record in the same batch",
    "refused with ValueError (the activity's non-retryable refusal), never another exception; the journal "
    "unchanged, the valid record before it not written either",
)
@given(case=broken_end())
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_malformed_packed_run_end_is_refused_and_nothing_is_written(
    case: tuple[str, dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
    record_property: Callable[[str, str], None],
) -> None:
    kind, entry = case
    journals = Journals(tmp_path_factory.mktemp("state"))
    run = journals.begin()
    before = journals.journal(run)
    note = {"seq": 2, "at": AT, "event": Event.HALT, "reason": "stopped", "resumable": False}
    with pytest.raises(ValueError) as refused:
        journals.write(run, [note, entry])
    assert type(refused.value) is ValueError  # a subclass's own name would make Temporal retry it
    assert journals.journal(run) == before
    SEEN[kind] = SEEN.get(kind, 0) + 1
    record_property(
        "observed",
        f"refused with ValueError, journal unchanged: {', '.join(f'{k} {n}' for k, n in sorted(SEEN.items()))}; "
        f"e.g. {str(refused.value)[:100]!r}",
    )


# ---------------------------------------------------------------- who reads the result

OLD_RESULT = {  # as older workflow code returned it (the saved histories' results)
    "exit_code": 3,
    "status": "failed",
    "message": "1 host failed",
    "rows": [["ny-1", "ny", "done", "on 2.0.0, verified"], ["ny-2", "ny", "failed", "boom"]],
}


def test_rows_come_back_from_new_and_old_results_and_status_json_prints_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`watch`'s summary rows from a packed result and from an older plain one; `status --format json` prints
    the result as before (a row per host), not the packed form."""
    from argparse import Namespace

    from upgrader.commands import durable

    rows = [("ny-1", "ny", "done", "on 2.0.0, verified"), ("ny-2", "ny", "failed", "boom")]
    new = wire({**{k: v for k, v in OLD_RESULT.items() if k != "rows"}, packed.ROWS_PACKED: packed.pack_rows(rows)})
    assert packed.rows_of(new) == packed.rows_of(wire(OLD_RESULT)) == rows
    state = {"run": RUN, "waiting": None, "outcome": new, "hosts": {}, "events": [], "abort": None}
    monkeypatch.setattr(durable, "run_record", lambda args, run_id: {"run": run_id})
    monkeypatch.setattr(durable, "query", lambda record: state)
    assert durable.status(Namespace(format="json"), RUN) == 3
    assert json.loads(capsys.readouterr().out)["outcome"] == OLD_RESULT
    with pytest.raises(ValueError):
        packed.rows_of({**new, packed.ROWS_PACKED: [[{"dc": "ny"}, ["ny-1"]], [{"dc": "ny"}, ["ny-1"]]]})
