"""The control worker's activities: the run's journal, window admission and the run's plan, at the desk.

The journal of a Temporal run is the same file a local run writes (state dir, runs/RUN/journal.jsonl),
so `show`, `report`, `runs` and `status` read it unchanged.  One writer: the workflow sends records in
order through ``record``; each carries the seq the workflow gave it, and a batch that is retried after
a lost answer is appended only past the last seq already on disk (an exclusive flock covers two
control workers sharing one state directory).

The run's plan is in the artifact store (temporal/plan_store.py): ``plan_part`` serves the workflows
its parts, and ``record`` copies it into the run's directory as plan.json with the run's first batch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from upgrader import moments, records
from upgrader.engine import admission
from upgrader.engine.notifier import notifier
from upgrader.errors import RefusedError
from upgrader.files import write_atomic
from upgrader.journal import JOURNAL, RUN_ID_RE, Journal, runs_dir
from upgrader.loading import bounded_read
from upgrader.loading.inputs import Loaded, read_plan_file, read_plan_text
from upgrader.models.inventory import Inventory
from upgrader.records import RunStart
from upgrader.temporal import packed, plan_store
from upgrader.temporal.messages import Admission, Notice, PlanPart, PlanRef, Records
from upgrader.vocabulary import Event
from upgrader.windows import load_overrides

PLAN_FILE = "plan.json"  # the run's plan in its directory, as a local run writes it
HELD = 4  # stored plans kept in memory for their parts (runs in flight on this worker)
PARENTS_KEPT = 10_000  # calling executions remembered (children and their continue-as-new runs)


@dataclass
class Control:
    state_dir: Path
    inventory: Loaded[Inventory]
    client: Client | None = None  # asks the server whose child a calling workflow is (``owned``)
    parents: dict[tuple[str, str], str | None] = field(default_factory=dict)  # (id, run id) → its run's execution
    store: Path | None = None  # the artifact store the plans are in (`worker --artifacts`); else the run's
    held: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (store, gz sha256) → verified gzip bytes

    def directory(self, run_id: str) -> Path:
        if not RUN_ID_RE.fullmatch(run_id) or run_id.strip(".") == "":
            raise RefusedError(f"{run_id!r} is not a run id")
        directory = runs_dir(self.state_dir) / run_id
        if not directory.is_dir():
            Journal.create(self.state_dir, run_id)  # private directories, like a local run's
        return directory

    @activity.defn(name="record")
    async def record(self, batch: Records) -> int:
        """Append the batch's records not yet on disk; returns how many were written.

        A run-end's packed hosts (temporal/packed.py) are expanded first, so the journal holds what a local
        run writes; a malformed one refuses the whole batch before anything is written."""
        batch = dataclasses.replace(batch, entries=[packed.expand_record(e) for e in batch.entries])
        for entry in batch.entries:  # what a reader would refuse is not written
            try:
                event = records.of_entry(entry).event
            except records.RecordError as exc:  # a plain ValueError: the workflow's RECORDING does not retry it
                raise ValueError(f"run {batch.run_id}: {exc}") from None
            if not isinstance(event, Event):  # a name outside the vocabulary, as Journal.record
                raise ValueError(f"run {batch.run_id}: {entry['event']!r} is not a journal event")
        await self.owned(runs_dir(self.state_dir) / batch.run_id, batch)
        directory = self.directory(batch.run_id)
        # Any workflow in the namespace can schedule this activity: the only file it can have written into
        # a run's directory is plan.json, once, and only a plan this worker's store holds, verified.
        if batch.plan is not None and not (directory / PLAN_FILE).exists():
            ref, data = batch.plan, await self.gz(batch.plan, batch.artifacts)
            pretty = await asyncio.to_thread(lambda: read_plan_text(plan_store.inflate(data, ref), PLAN_FILE).to_json())
            write_atomic(directory / PLAN_FILE, pretty)
        return append(directory / JOURNAL, batch.entries)

    @activity.defn(name="plan_part")
    async def plan_part(self, part: PlanPart) -> bytes:
        """Part ``index`` of the stored plan's gzip file (plan_store.part_range), once the whole file is
        verified against the reference.  A plan this worker's store does not hold (or not byte for byte):
        refused, not retried (plan_ref.load fails the run)."""
        data = await self.gz(part.ref, part.artifacts)
        if not isinstance(part.index, int) or not 0 <= part.index < part.ref.parts:
            raise ApplicationError(
                f"plan {part.ref.sha256[:12]}… has no part {part.index!r}: refused",
                type=plan_store.PlanStoreError.__name__,
                non_retryable=True,
            )
        start, end = plan_store.part_range(part.ref, part.index)
        return data[start:end]

    async def gz(self, ref: PlanRef, artifacts: str) -> bytes:
        """The stored plan's gzip bytes, verified (size and sha256 of the text), from this worker's store."""
        store = self.store or Path(artifacts)
        key = (str(store), str(ref.gz_sha256))
        if key not in self.held:
            try:
                if self.store is None and not store.is_absolute():  # a workflow's: never relative to our cwd
                    raise plan_store.PlanStoreError(
                        f"the artifact store {str(store)!r} is not an absolute path",
                        "give the control worker --artifacts DIR",
                    )
                data = await asyncio.to_thread(plan_store.read_gz, store, ref)
            except plan_store.PlanStoreError as exc:
                raise ApplicationError(
                    f"control worker: {exc}", type=plan_store.PlanStoreError.__name__, non_retryable=True
                ) from None
            while len(self.held) >= HELD:
                self.held.pop(next(iter(self.held)))
            self.held[key] = data
        return self.held[key]

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
        return [self.record, self.admit, self.notify, self.plan_part]

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
    """The seq of the journal's last whole record, read from its end: a tail of 64 KiB, four times more
    while it holds no whole record (a 10,000-host run-start or run-end record is ~1 MB)."""
    with path.open("rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        size = 65536
        while True:
            begin = max(0, end - size)
            fh.seek(begin)
            tail = fh.read(end - begin).splitlines()
            if begin > 0:
                tail = tail[1:]  # it may begin mid-record
            for raw in reversed(tail):
                try:
                    return int(json.loads(raw)["seq"])
                except (ValueError, KeyError, TypeError):
                    continue
            if begin == 0:
                return 0
            size *= 4
