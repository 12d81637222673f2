"""The control worker's activities: the run's journal and window admission, at the desk.

The journal of a Temporal run is the same file a local run writes (state dir, runs/RUN/journal.jsonl),
so `show`, `report`, `runs` and `status` read it unchanged.  One writer: the workflow sends records in
order through ``record``; each carries the seq the workflow gave it, and a batch that is retried after
a lost answer is appended only past the last seq already on disk (an exclusive flock covers two
control workers sharing one state directory).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError

from upgrader import moments, records
from upgrader.engine import admission
from upgrader.engine.notifier import notifier
from upgrader.errors import RefusedError
from upgrader.files import write_atomic
from upgrader.journal import JOURNAL, RUN_ID_RE, Journal, runs_dir
from upgrader.loading import bounded_read
from upgrader.loading.inputs import Loaded, read_plan_file
from upgrader.models.inventory import Inventory
from upgrader.records import RunStart
from upgrader.temporal.messages import Admission, Notice, Records
from upgrader.vocabulary import Event
from upgrader.windows import load_overrides

PARENTS_KEPT = 10_000  # calling executions remembered (children and their continue-as-new runs)
RUN_FILES = frozenset({"plan.json"})  # what a workflow's record batch may write into its run's directory


@dataclass
class Control:
    state_dir: Path
    inventory: Loaded[Inventory]
    client: Client | None = None  # asks the server whose child a calling workflow is (``owned``)
    parents: dict[tuple[str, str], str | None] = field(default_factory=dict)  # (id, run id) → its run's execution

    def directory(self, run_id: str) -> Path:
        if not RUN_ID_RE.fullmatch(run_id) or run_id.strip(".") == "":
            raise RefusedError(f"{run_id!r} is not a run id")
        directory = runs_dir(self.state_dir) / run_id
        if not directory.is_dir():
            Journal.create(self.state_dir, run_id)  # private directories, like a local run's
        return directory

    @activity.defn(name="record")
    async def record(self, batch: Records) -> int:
        """Append the batch's records not yet on disk; returns how many were written."""
        for entry in batch.entries:  # what a reader would refuse is not written (RecordError is a ValueError)
            if not isinstance(records.of_entry(entry).event, Event):  # a name outside the vocabulary, as Journal.record
                raise ValueError(f"run {batch.run_id}: {entry['event']!r} is not a journal event")
        # Any workflow in the namespace can schedule this activity: only the run files the workflow writes,
        # by their fixed names, ever land in the run's directory (a name is not a path: '../x' writes nowhere).
        unknown = sorted(set(batch.files) - RUN_FILES)
        if unknown:
            raise ValueError(f"run {batch.run_id}: refusing to write {unknown!r} (only {sorted(RUN_FILES)})")
        await self.owned(runs_dir(self.state_dir) / batch.run_id, batch)
        directory = self.directory(batch.run_id)
        for name, text in batch.files.items():
            if not (directory / name).exists():
                write_atomic(directory / name, text)
        return append(directory / JOURNAL, batch.entries)

    @activity.defn(name="admit")
    async def admit(self, request: Admission) -> str | None:
        """The guard's verdict at workflow time (None: go on), for the run's plan and this inventory."""
        plan = read_plan_file(self.directory(request.run_id) / "plan.json")
        overrides = load_overrides(Path(request.overrides)).model if request.overrides else None
        admit = admission.admitter(plan, self.inventory.model, lambda: moments.aware(request.now), overrides)
        return admit(request.estimate)

    @activity.defn(name="notify")
    async def notify(self, notice: Notice) -> None:
        """Best effort, like a local run's: the webhooks are told; a failure to tell them changes nothing."""

        def send() -> None:
            with notifier(self.inventory.model, lambda: datetime.now(UTC)) as tell:
                tell(notice.kind, component=notice.component, version=notice.version, run=notice.run, **notice.details)

        await asyncio.to_thread(send)

    def all(self) -> list[Any]:
        return [self.record, self.admit, self.notify]

    async def owned(self, directory: Path, batch: Records) -> None:
        """Refuse a batch unless its run is the calling workflow execution's own, or that execution is a
        `hosts` child of the run's (the server says whose child it is: no input of the caller's counts).
        Otherwise a workflow of anyone's in the namespace could append records to another run's journal (a
        local run's, whose records `resume` acts on) by naming its id."""
        info = activity.info()
        execution = run_execution(directory, batch)
        if execution is not None and (execution == info.workflow_run_id or execution == await self.parent(info)):
            return
        raise ValueError(
            f"run {batch.run_id} is not this workflow execution's ({info.workflow_run_id}) nor its parent's: "
            "its records are not written"
        )

    async def parent(self, info: activity.Info) -> str | None:
        """The run id of the `upgrade` execution whose `hosts` child the caller is (None: it is none's)."""
        if self.client is None or info.workflow_id is None or info.workflow_run_id is None:
            return None
        key = (info.workflow_id, info.workflow_run_id)
        if key not in self.parents:
            try:
                found = await self.client.get_workflow_handle(key[0], run_id=key[1]).describe()
            except RPCError:
                return None  # not cached: asked again next time
            child = found.workflow_type == "hosts" and found.parent_id is not None
            if len(self.parents) > PARENTS_KEPT:
                self.parents.clear()
            self.parents[key] = found.parent_run_id if child else None
        return self.parents[key]


def run_execution(directory: Path, batch: Records) -> str | None:
    """The execution a run's records belong to: a new run's first record is its run-start naming that
    execution, an existing run's journal begins with one."""
    journal = directory / JOURNAL
    if journal.exists():
        with journal.open("rb") as fh:
            first = fh.readline(bounded_read.MAX_JOURNAL_LINE)
        try:
            start = records.parse(first)
        except records.RecordError:
            start = None
    else:
        start = records.of_entry(batch.entries[0]) if batch.entries else None
    if not isinstance(start, RunStart):
        return None
    execution = start.fields.get("execution")
    return execution if isinstance(execution, str) else None


def append(path: Path, entries: list[dict[str, Any]]) -> int:
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        last = _last_seq(path)
        lines = [json.dumps(e, sort_keys=True, default=str) + "\n" for e in entries if int(e["seq"]) > last]
        if lines:
            os.write(fd, "".join(lines).encode())
            os.fsync(fd)
        return len(lines)
    finally:
        os.close(fd)


def _last_seq(path: Path) -> int:
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 65536))
        tail = fh.read().splitlines()
    for raw in reversed(tail):
        try:
            return int(json.loads(raw)["seq"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0
