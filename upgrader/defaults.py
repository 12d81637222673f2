"""Every default of a run, in one place: how many hosts at once, how long the controller waits, Temporal's budgets.

All durations are seconds (floats), so this module imports nothing but the agent's protocol constants
(stdlib only) and every layer can read it; the
Temporal modules turn them into ``timedelta``.  A value here is the one definition: modules that used
to hold their own copy import it (tests/unit/test_defaults.py checks that no copy is left).

The safety margin.  The local engine waited 30 s beyond a host program's computed bound
(engine/programs.hop_timeout, checks_budget) and the Temporal workflow 600 s.  We keep 30 s
(``SAFETY_MARGIN``): the bound already holds every timeout the host program can spend (stop, migrate,
start, every check's retries), so the margin only covers the agent's start and the round trip; 600 s
let a lost host hold a slot for ten more minutes for nothing.  An activity *contains* that call, and
first opens the host's session inside the worker, so its ``start_to_close`` is the same bound plus
``ACTIVITY_MARGIN`` = the call's margin plus one connection handshake (transport/base.Timeouts.handshake,
30 s by default): the call inside it always times out first and reports a timed-out host, instead of
Temporal cancelling the activity and the workflow taking the host for lost.
"""

from __future__ import annotations

from upgrader.agent import protocol

# ------------------------------------------------------------------ hosts at once
PARALLEL = 32  # the default of --parallel: hosts worked on at once, on every command that connects
STAGE_PARALLEL = 16  # uploads at once while staging: the controller's uplink, not the hosts, is the limit

# ------------------------------------------------------------------ how long the controller waits on a host
LOCK_TIMEOUT = 30.0  # the lock (and lock check) round trip: a few file operations on the host
FACTS_TIMEOUT = 20.0  # one facts round trip
SAFETY_MARGIN = 30.0  # beyond a host program's computed bound (see above: why 30 s and not 600 s)
ROLLBACK_TIMEOUT = 120.0  # an emergency rollback's program when no playbook bounds it (stop + start + checks)
# Seconds a host's program in flight gets to end its current operation when an emergency rollback takes
# the host over; then it is killed.  Defined once, in the agent's protocol module (stdlib only: the agent
# cannot import this module, but the controller can import that one); the controller always sends it.
TAKEOVER_WAIT = protocol.TAKEOVER_WAIT
TAKEOVER_SLACK = 10.0  # the takeover's own round trip, on top of TAKEOVER_WAIT, in a rollback's timeout

# ------------------------------------------------------------------ Temporal's budgets (temporal/*.py)
ACTIVITY_MARGIN = SAFETY_MARGIN + 30.0  # + one handshake: the call inside an activity times out first
# A host activity's own time around the agent call the policy budgets (engine/host_actions.Timeouts) when
# it runs more than that call: the worker's start, the upload and the host's testinfra modules (upgrade,
# rollback, testinfra).  A dead worker is noticed by ACTIVITY_HEARTBEAT long before this.
ACTIVITY_SLACK = 600.0
ACTIVITY_HEARTBEAT = 5.0  # a SIGKILLed worker is noticed within this
BEAT = 1.0  # between an activity's heartbeats while its engine call runs (well under ACTIVITY_HEARTBEAT)
WORKER_GRACE = 600.0  # a stopping worker lets its activities end; at most: host programs are bounded
RECORD_SECONDS = 30.0  # one batch of journal records written by the control worker
NOTIFY_SECONDS = 60.0  # one notification sent by the control worker
NOTIFY_ATTEMPTS = 3  # a notice lost is never a run's failure: a few tries, then it is dropped
LOCK_SECONDS = 300.0  # locking and gathering facts of one datacenter's hosts (one activity per datacenter)
ROLLBACK_SECONDS = 900.0  # one host's rollback activity, at least (more if its call's timeout + ACTIVITY_SLACK is)
ADMISSION_SECONDS = 120.0  # the admission activity (reads past runs' journals, the windows)
RETRY_FIRST = 1.0  # a repeatable activity's first retry after this
RETRY_BACKOFF = 1.5
RETRY_MAX_INTERVAL = 10.0
RETRY_ATTEMPTS = 20  # ~2.5 minutes of retries: a control worker restarting, a server failing over
WATCH_POLL = 0.5  # between looks at a workflow's state while the CLI watches it
CONNECT_SECONDS = 10.0  # the client's connection to the Temporal frontend
