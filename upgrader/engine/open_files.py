"""File descriptors a run needs, checked against RLIMIT_NOFILE before the first connection opens.

A run keeps each host's connection open from its first call to the end (calls reuse it), so the
descriptors it holds grow with the hosts it contacts, not with ``--parallel``.  The one formula:

    needed = BASE + hosts × PER_HOST + jumps × PER_JUMP + parallel × PER_WORKER + JOURNAL

- BASE (64): stdin/out/err, the interpreter's and libraries' own (urandom, epoll, imported .so
  files kept open, the log file, the rich console), with room to spare.
- PER_HOST (1): the host's TCP socket.  Over a jump host the target's SSH runs in a direct-tcpip
  channel, which is no descriptor of its own; a transport that opens one jump connection per host
  instead holds one socket per host there.  Counting 1 per host covers both.
- PER_JUMP (1): one socket per datacenter bastion, when its connection is shared.
- PER_WORKER (1): a worker may hold one local file while it runs (an artifact being uploaded, a
  downloaded file being written).
- JOURNAL (2): the run journal and the audit log, each opened, appended, fsync'd and closed per
  record under a lock — never more than one each at once.

The soft limit is raised (up to the hard limit) when it is short; if even the hard limit is short,
the run is refused before anything is contacted, naming the numbers and the fixes.
"""

from __future__ import annotations

import resource
from collections.abc import Iterable
from dataclasses import dataclass

from upgrader.errors import RefusedError
from upgrader.transport.base import Endpoint

BASE = 64
PER_HOST = 1
PER_JUMP = 1
PER_WORKER = 1
JOURNAL = 2


def needed(hosts: int, jumps: int, parallel: int) -> int:
    """Descriptors a run on ``hosts`` hosts behind ``jumps`` jump hosts with ``parallel`` workers may hold."""
    return BASE + hosts * PER_HOST + jumps * PER_JUMP + min(parallel, hosts) * PER_WORKER + JOURNAL


@dataclass(frozen=True)
class Checked:
    """The outcome of ``ensure``: what was needed, and the soft limit before and after."""

    needed: int
    soft_before: int
    soft: int
    hard: int

    @property
    def raised(self) -> bool:
        return self.soft != self.soft_before


def _unlimited(value: int) -> bool:
    return value == resource.RLIM_INFINITY or value < 0


def ensure(hosts: int, jumps: int, parallel: int) -> Checked:
    """Make RLIMIT_NOFILE's soft limit cover ``needed(...)``, raising it up to the hard limit; else refuse."""
    need = needed(hosts, jumps, parallel)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if _unlimited(soft) or soft >= need:
        return Checked(need, soft, soft, hard)
    if _unlimited(hard) or hard >= need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        except (ValueError, OSError) as exc:  # e.g. above fs.nr_open: report it like a short hard limit
            raise _refusal(need, soft, hard, hosts, jumps, parallel, f" (raising it failed: {exc})") from None
        return Checked(need, soft, need, hard)
    raise _refusal(need, soft, hard, hosts, jumps, parallel, "")


def _refusal(need: int, soft: int, hard: int, hosts: int, jumps: int, parallel: int, why: str) -> RefusedError:
    return RefusedError(
        f"{hosts} host(s) behind {jumps} jump host(s) with --parallel {parallel} need {need} open files; "
        f"this process may open {soft} (soft limit) and at most {hard} (hard limit){why}; nothing was contacted",
        f"raise the limit to at least {need}: `ulimit -n {need}` in the shell that starts upgrader "
        f"(as root, or after raising the hard limit), or LimitNOFILE={need} in its systemd unit; "
        f"or contact fewer hosts per run (--limit): each open connection holds one, "
        f"--parallel lowers only the workers' share ({min(parallel, hosts) * PER_WORKER})",
    )


def for_endpoints(endpoints: Iterable[Endpoint], parallel: int) -> Checked:
    """``ensure`` for the hosts a pool may contact and their distinct jump hosts."""
    hosts = list(endpoints)
    jumps = {(e.jump.address, e.jump.port, e.jump.user) for e in hosts if e.jump is not None}
    return ensure(len(hosts), len(jumps), parallel)
