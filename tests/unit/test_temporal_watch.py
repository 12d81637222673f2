"""`watch` of a Temporal run (temporal/client.watch) against answers that come in an awkward order.

A `hosts` child that has just continued-as-new can answer `progress` before its new execution has taken
over the events and cursor it carries (cursor 0, no events).  A watcher that then asked again from 0 showed
every event of the child a second time (seen once in 4 runs of test_temporal_tree's watch test under load).
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest
from temporalio.client import WorkflowQueryFailedError

from upgrader.engine.progress import Lines
from upgrader.temporal import client as temporal_client

CHILD = "run/hosts-1"
EVENTS: list[list[Any]] = [[1, "failure", "ch-5: switch failed", "ch-5", "", 0], [2, "run", "a later line", "", "", 0]]


class Script:
    """The parent says the child runs; the child answers in order: half its events, then as a fresh
    continue-as-new execution (cursor 0, nothing), then all of them; then the run ends."""

    def __init__(self) -> None:
        self.child_answers = 0
        self.done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def progress(self, _client: Any, wid: str, since: int = 0, run_id: str | None = None) -> dict[str, Any]:
        if wid != CHILD:
            return {"cursor": 0, "hosts": {}, "events": [], "tree": {"child": CHILD}}
        self.child_answers += 1
        if self.child_answers == 2:  # the new execution, before it took over what it carries
            return {"cursor": 0, "hosts": {}, "events": []}
        upto = 1 if self.child_answers == 1 else 2
        if self.child_answers >= 4 and not self.done.done():
            self.done.set_result({"exit_code": 0, "status": "succeeded", "message": "", "rows": []})
        return {"cursor": upto, "hosts": {}, "events": [e[1:] for e in EVENTS if since < e[0] <= upto]}


class Handle:
    id = "run"
    run_id = None
    _client = None

    def __init__(self, script: Script) -> None:
        self.script = script

    async def result(self) -> dict[str, Any]:
        return await self.script.done


def test_a_child_answering_from_cursor_0_after_continue_as_new_shows_nothing_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shown = io.StringIO()

    async def go() -> Script:
        script = Script()
        monkeypatch.setattr(temporal_client, "progress", script.progress)
        monkeypatch.setattr(temporal_client, "POLL", 0.01)
        await temporal_client.watch(Handle(script), Lines("json", stream=shown))  # type: ignore[arg-type]
        return script

    script = asyncio.run(go())
    said = [json.loads(line) for line in shown.getvalue().splitlines()]
    assert script.child_answers >= 4
    assert [e["message"] for e in said if e["event"] in ("failure", "run")].count("ch-5: switch failed") <= 1, said
    assert [e.get("host") for e in said if e["event"] == "failure"] == ["ch-5"], said


class Failing:
    """The parent says the child runs; the child's query fails with ``why`` (twice), then the run ends."""

    def __init__(self, why: str) -> None:
        self.why = why
        self.asked = 0
        self.done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def progress(self, _client: Any, wid: str, since: int = 0, run_id: str | None = None) -> dict[str, Any]:
        if wid != CHILD:
            return {"cursor": 0, "hosts": {}, "events": [], "tree": {"child": CHILD}}
        self.asked += 1
        if self.asked >= 3 and not self.done.done():
            self.done.set_result({"exit_code": 0, "status": "succeeded", "message": "", "rows": []})
        raise WorkflowQueryFailedError(self.why)


@pytest.mark.parametrize(
    ("why", "told"),
    [
        ("sql: no rows in result set: workflow not found for ID: run/hosts-1", 0),  # it just ended
        ("[TMPRL1100] Nondeterminism error: activity type of scheduled event 'record' does not match", 1),
    ],
)
def test_a_child_that_just_ended_is_not_news_but_a_worker_that_cannot_answer_is_said_once(
    monkeypatch: pytest.MonkeyPatch, why: str, told: int
) -> None:
    """A child's query refused because it has just ended says nothing; a control worker that cannot run the
    workflow (a build that cannot replay it) is said once, however often the query fails."""
    shown = io.StringIO()

    async def go() -> None:
        failing = Failing(why)
        monkeypatch.setattr(temporal_client, "progress", failing.progress)
        monkeypatch.setattr(temporal_client, "POLL", 0.01)
        await temporal_client.watch(Handle(failing), Lines("json", stream=shown))  # type: ignore[arg-type]

    asyncio.run(go())
    said = [json.loads(line) for line in shown.getvalue().splitlines()]
    waits = [e["message"] for e in said if e["event"] == "wait"]
    assert len(waits) == told, said
    assert all("cannot answer" in w and "waits for one that can" in w for w in waits)
