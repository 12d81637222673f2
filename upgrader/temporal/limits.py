"""Temporal's default limits, as the server's source states them, and the budgets this design keeps under them.

Read from temporalio/temporal at commit 6805caea59e3 (2026-08-21), ``common/dynamicconfig/constants.go``
unless said otherwise; a server operator can change them per namespace (dynamic config), so these are
the defaults a run must fit, with margin.  Each server limit comes as a pair: past *warn* the server
logs, past *error* it refuses the request or terminates the execution.  The design stays under the warn
thresholds (issue 27 §1), so a run is never one plan size away from the error.

Measured with `--engine temporal` before this module (issue 27): a 300-host inventory's start input
(the plan inline) was refused ("Blob data size exceeds limit"), and 600 hosts hit gRPC's 4 MiB; the plan
now travels by reference (temporal/plan_store.py, plan_ref.py).
"""

from __future__ import annotations

from upgrader.errors import RefusedError

KiB = 1024
MiB = 1024 * KiB
SOURCE = "temporalio/temporal@6805caea59e3 common/dynamicconfig/constants.go"

# ---------------------------------------------------------------- the server's defaults
BLOB_WARN = 512 * KiB  # limit.blobSize.warn (constants.go:397-401): each payload, start input and query result too
BLOB_ERROR = 2 * MiB  # limit.blobSize.error (constants.go:392-396); query results are held to it
# (service/frontend/workflow_handler.go:2962-2966, RespondQueryTaskCompleted)
MEMO_WARN = 2 * KiB  # limit.memoSize.warn (constants.go:407-411)
HISTORY_EVENTS_WARN = 10 * KiB  # limit.historyCount.warn (constants.go:457-461): 10,240 events
HISTORY_EVENTS_ERROR = 50 * KiB  # limit.historyCount.error (constants.go:452-456): 51,200 events; terminated
HISTORY_EVENTS_SUGGEST_CAN = 4 * KiB  # limit.historyCount.suggestContinueAsNew (constants.go:488-493)
HISTORY_BYTES_WARN = 10 * MiB  # limit.historySize.warn (constants.go:441-445)
HISTORY_BYTES_ERROR = 50 * MiB  # limit.historySize.error (constants.go:436-440)
HISTORY_BYTES_SUGGEST_CAN = 4 * MiB  # limit.historySize.suggestContinueAsNew (constants.go:446-451)
PENDING_ACTIVITIES_ERROR = 2000  # limit.numPendingActivities.error (constants.go:418-423)
PENDING_CHILDREN_ERROR = 2000  # limit.numPendingChildExecutions.error (constants.go:412-417)
SEARCH_ATTRIBUTE_VALUE = 2 * KiB  # frontend.searchAttributesSizeOfValueLimit (constants.go:904-908)
SEARCH_ATTRIBUTES_TOTAL = 40 * KiB  # frontend.searchAttributesTotalSizeLimit (constants.go:909-913)
# gRPC's own default receive limit (grpc-go's defaultServerMaxReceiveMessageSize), which the server keeps:
# common/rpc/grpc.go:30-32 sets its HTTP API's request limit "to the max gRPC request size", 4 MiB.
GRPC_MESSAGE = 4 * MiB

# ---------------------------------------------------------------- the design's budgets (issue 27 §1)
PAYLOAD_BUDGET = BLOB_WARN  # any one payload: the warn threshold, a quarter of the error
# The start input carries the plan by reference (temporal/plan_store.py: sha256, sizes), not the plan: a few
# KiB at 10,000 hosts (tests/unit/test_plan_store.py measures it), held to the payload budget like any other.
START_BUDGET = PAYLOAD_BUDGET
HISTORY_EVENTS_BUDGET = HISTORY_EVENTS_WARN  # per execution (continue-as-new before it)
HISTORY_BYTES_BUDGET = HISTORY_BYTES_WARN
PENDING_BUDGET = 1000  # pending activities, and child workflows, per execution: half the server's 2,000
QUERY_BUDGET = 1 * MiB  # a query's answer (`progress`): half the blob error limit it is held to

# ---------------------------------------------------------------- the tree of workflows (hosts_workflow.py)
# A child continues-as-new when the server suggests it, or at the latest here (a server that does not suggest).
CAN_EVENTS = HISTORY_EVENTS_SUGGEST_CAN
# History events one host program adds to its child's history: 13.7 measured on a 40-host run
# (tests/unit/test_temporal_tree.py), with margin.
EVENTS_PER_PROGRAM = 15
# Host programs one `hosts` child runs at once (its sliding window).  Each has at most one activity pending
# (PENDING_BUDGET), and once continue-as-new is due the programs in flight still end in the same execution,
# so their events must fit between CAN_EVENTS and the warn limit: (10,240 - 4,096) // 15 = 409.
WINDOW = min(PENDING_BUDGET, (HISTORY_EVENTS_BUDGET - CAN_EVENTS) // EVENTS_PER_PROGRAM)
# Programs one workflow task of a `hosts` child starts at most; the rest wait for the next task (the
# programs started bring it).  A task's cost grows with the programs it starts, and one over the SDK's 2 s
# deadlock limit is failed and replayed at the same cost (hosts_workflow.HostsWorkflow.task_full).
STARTS_PER_TASK = 50
# Hosts per `hosts` child: its input and result carry each host's state (~150 B) and its name, and its
# continue-as-new input the same: 1,000 hosts stay a fraction of PAYLOAD_BUDGET.  A larger phase or rollback
# is run by one child after another, each ending its hosts before the next begins.
CHILD_HOSTS = 1000
# Hosts per datacenter activity (lock, stage, unstage, release): each carries the hosts' states and facts
# in, and their states and records out (tests/unit/test_temporal_tree.py measures them at 1,000 hosts).
CHUNK_HOSTS = 200
# `progress` (the live view): at most this many hosts an answer (~80 B each; a watcher asks on from the cursor),
# and the newest events each workflow keeps for `watch` (~150 B each): an answer stays far under QUERY_BUDGET.
PROGRESS_HOSTS = 2000
WATCH_EVENTS = 1000

# The run's workflow history holds every `hosts` child's input and result (messages.Hosts, HostsDone), once
# for each pass over the fleet (a phase, a rollback): each host's name in its input's list, and its state
# packed by identical fields (engine/policy_state.pack_hosts: a name each) in the input's and the result's
# snapshot; a child's result takes over at most CHILD_EVENTS of its newest `watch` events, each text clipped to
# EVENT_TEXT characters.  Measured (tests/unit/test_temporal_bytes.py, 10,000 hosts in 10 datacenters, a
# phase then a rollback, one host in 50 failed with its own message): 69 B per host per pass, 1.38 MB in
# all, against 25.9 MB unpacked with every result's WATCH_EVENTS events; ~1,200 B a host a pass before
# (bench/results/temporal_scale-2026-12-05-1000-af199fc.md: the parent's 2.32 MB for 1,000 hosts).
PARENT_BYTES_PER_HOST_PASS = 200  # the design's budget for it: 10,000 hosts, a few passes, well under 10 MiB
# The run's workflow history also holds each lock, stage, unstage and release activity's Work and Done: the
# hosts' states packed as above, and of the facts a lock finds only what stage reads (host_actions.for_stage).
# Measured (tests/unit/test_temporal_bytes.py, a 60-host run in 3 datacenters on the dev server): lock 105,
# stage 228, release 94 B per host, 427 in all, against 841, 951 and 267 (2,059) with each host's fields
# and whole facts.  Their journal records (stage-host, ~150 B a host) are the most of what is left.
DATACENTER_BYTES_PER_HOST = 600
CHILD_EVENTS = 100
EVENT_TEXT = 300
# Journal records one `record` activity carries: a flush of more goes in several activities, in seq order.
RECORD_BATCH_BYTES = PAYLOAD_BUDGET // 4

# Host programs started per second on one datacenter's task queue, by all its workers together (the
# server enforces it: Worker(max_task_queue_activities_per_second=...)), `worker --activities-per-second`.
# Each host program opens its SSH connection through the datacenter's jump host: the handshakes cost the
# worker ~27 ms CPU per host (bench/results/scale-16-2026-12-01-rollback.md, rollback, CPU ms/host), so
# one core sustains ~37 a second; 25 leaves a third of it for the programs themselves, and starts a
# 1,000-host datacenter's emergency rollback within 40 s.  A second worker in the datacenter adds
# capacity for programs in flight, not a faster start: the rate is the queue's, not each worker's.
QUEUE_ACTIVITIES_PER_SECOND = 25.0


class PayloadTooLarge(RefusedError):
    """A payload over the design's budget: refused before the server sees it, nothing started."""

    reference = "temporal-payload-too-large"


def check_payload(what: str, size: int, hint: str, budget: int = PAYLOAD_BUDGET) -> None:
    """Refuse a payload of ``size`` bytes over ``budget`` (one line: what, its size, the limit and why)."""
    if size > budget:
        raise PayloadTooLarge(
            f"{what} is {_human(size)}, over the {_human(budget)} budget per Temporal payload "
            f"(the server warns at {_human(BLOB_WARN)} and refuses at {_human(BLOB_ERROR)}); nothing was started",
            hint,
        )


def _human(size: int) -> str:
    return f"{size / MiB:.1f} MiB" if size >= MiB else f"{size / KiB:.0f} KiB" if size >= KiB else f"{size} B"
