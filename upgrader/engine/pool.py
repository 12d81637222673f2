"""The hosts of a run, worked on in parallel: ``Pool`` (each host's transport and agent session, made
lazily, closed together), ``GroupResult`` and ``HostResult`` (what a function gave on each host), and
``in_background`` (work started ahead of need)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from upgrader.engine import remote
from upgrader.transport import fabric_transport
from upgrader.transport.base import Endpoint, Timeouts, Transport

if TYPE_CHECKING:
    from upgrader.transport.gateways import Gateways

log = logging.getLogger(__name__)
T = TypeVar("T")

PARALLEL = 32  # the default of --parallel: hosts worked on at once, on every command that connects


@dataclass(frozen=True)
class HostResult(Generic[T]):
    """What ``fn(host)`` gave in ``Pool.each``: its value, or the exception it raised."""

    host: str
    value: T | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """fn returned (its value may still report a failure of its own, e.g. an AgentResult that is not ok)."""
        return self.error is None

    def __str__(self) -> str:
        return str(self.error) if self.error is not None else str(self.value)


class GroupResult(Generic[T]):
    """Each host's HostResult from ``Pool.each``, in the order the hosts were given (cf. fabric's GroupResult)."""

    def __init__(self, results: dict[str, HostResult[T]]) -> None:
        self._results = results

    def __getitem__(self, host: str) -> HostResult[T]:
        return self._results[host]

    def __iter__(self) -> Iterator[HostResult[T]]:
        return iter(self._results.values())

    def __len__(self) -> int:
        return len(self._results)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self)

    @property
    def succeeded(self) -> dict[str, T]:
        """host → value, for the hosts where fn returned."""
        return {r.host: r.value for r in self if r.error is None}  # type: ignore[misc]

    @property
    def failed(self) -> dict[str, Exception]:
        """host → the exception fn raised there."""
        return {r.host: r.error for r in self if r.error is not None}


class Pool:
    """Transports and agent sessions for a run, made lazily, reused, closed together; runs work on hosts in parallel.

    The pool is the only owner of each host's transport and agent session (``session(host)``): nothing
    else keeps a registry of them, so two pools (two controllers in one process) never share a stream.

    The Fabric transports of a pool share its ``Gateways``: one connection per jump host for the
    whole run (each host behind it is a channel in it), closed with the pool, and the count of
    handshakes that were refused or reset and retried (``handshake_retries``, for the run's records).
    """

    def __init__(
        self,
        endpoints: dict[str, Endpoint],
        factory: Callable[[Endpoint], Transport] | None = None,
        timeouts: Timeouts | None = None,
        parallel: int = PARALLEL,
    ) -> None:
        self._endpoints = endpoints
        self._timeouts = timeouts or Timeouts()
        self._factory = factory or self._fabric
        self._transports: dict[str, Transport] = {}
        self._sessions: dict[str, remote.Session] = {}  # each host's agent session: owned here, nowhere else
        self._made = threading.RLock()
        self._gateways: list[Gateways] = []  # [0] makes new transports; more come with adopted connections
        self.parallel = parallel

    def _fabric(self, endpoint: Endpoint) -> Transport:
        if not self._gateways:
            from upgrader.transport.gateways import Gateways  # imported lazily: planning stays light

            self._gateways.append(Gateways(self._timeouts))
        return fabric_transport(endpoint, self._timeouts, self._gateways[0])

    def adopt_gateways(self, gateways: Gateways) -> None:
        """The jump connections of adopted transports: used for this pool's other hosts too (if it has made
        none of its own yet), counted and closed with the pool."""
        if gateways not in self._gateways:
            self._gateways.append(gateways)

    @property
    def handshake_retries(self) -> int:
        """Handshakes (to hosts and jump hosts) refused or reset and tried again, so far in this run."""
        return sum(g.retries for g in self._gateways)

    def endpoint(self, host: str) -> Endpoint:
        """How ``host`` is reached (for checks that connect on their own, such as testinfra modules)."""
        return self._endpoints[host]

    def __getitem__(self, host: str) -> Transport:
        with self._made:
            if host not in self._transports:
                self._transports[host] = self._factory(self._endpoints[host])
            return self._transports[host]

    def session(self, host: str) -> remote.Session:
        """``host``'s agent session (its transport and serving agent), made on first use, closed with the pool."""
        with self._made:
            if host not in self._sessions:
                self._sessions[host] = remote.Session(self[host])
            return self._sessions[host]

    def each(self, hosts: Iterable[str], fn: Callable[[str], T], limit: int | None = None) -> GroupResult[T]:
        """fn(host) for every host in parallel: each host's value, or the exception it raised (GroupResult)."""
        hosts = list(hosts)
        out: dict[str, HostResult[T]] = {}
        if not hosts:
            return GroupResult(out)
        for h in hosts:
            self.session(h)  # create transports and sessions in this thread; connections open in the workers
        with ThreadPoolExecutor(max_workers=max(1, min(limit or self.parallel, len(hosts)))) as ex:
            futures = {h: ex.submit(fn, h) for h in hosts}
            for h, fut in futures.items():
                try:
                    out[h] = HostResult(h, fut.result())
                except Exception as exc:
                    out[h] = HostResult(h, None, exc)
        return GroupResult(out)

    def sessions(self) -> dict[str, remote.Session]:
        """The agent sessions made so far (host → session): the hosts this pool has started on."""
        with self._made:
            return dict(self._sessions)

    def hand_over(self, to: Pool) -> list[str]:
        """Give ``to`` each session this pool made whose host ``to`` reaches at the same endpoint, with the
        same timeouts, and this pool's jump connections (they serve ``to``'s other hosts too); close the
        rest.  This pool holds nothing afterwards.  The hosts handed over, in the order they were started.

        For the early start (commands/early.py): its pool connects before the inventory is validated,
        and the command's pool, made from the validated inventory, takes only what it would have made.
        """
        with self._made:
            sessions, self._sessions = self._sessions, {}
            transports, self._transports = self._transports, {}
            gateways, self._gateways = self._gateways, []
        same = to._timeouts == self._timeouts
        handed = []
        for host, session in sessions.items():
            if same and to._endpoints.get(host) == self._endpoints[host]:
                to.adopt(host, session)
                handed.append(host)
            else:
                session.close()
                session.transport.close()
        for host, transport in transports.items():
            if host not in sessions:
                transport.close()
        for g in gateways:
            if same:
                to.adopt_gateways(g)
            else:
                g.close()
        return handed

    def adopt(self, host: str, session: remote.Session) -> None:
        """Use ``session`` (its transport already connecting, its agent maybe starting) for ``host`` from now on."""
        with self._made:
            self._transports[host] = session.transport
            self._sessions[host] = session

    def warm(self, hosts: Iterable[str], python: str) -> None:
        """Start connecting to ``hosts`` and their agents (engine.remote.start) in the background; return at once.

        The SSH handshakes and agent starts (mostly waiting on the hosts) then overlap the rest of
        the start-up: loading the playbook, the journal, the remaining imports.  Each host's first
        call waits for its own connection; a failure is reported by that call, like any other.
        Daemon threads: a host that never answers must not hold up the process's exit after the
        run is decided.
        """
        # At most --parallel threads (a queue), not one per host waiting on a semaphore.
        in_background(lambda s: remote.start(s, python), [self.session(h) for h in hosts], self.parallel, "connect")

    def close(self) -> None:
        # The jump connections first: closing one ends every channel in it at once, each host's
        # connection and its agent's session with it (the host's sshd closes the agent's stdin, the
        # agent reads EOF and exits, as when its own channel is closed).  Closed one by one instead,
        # the 256 agent channels and connections of a rollback took 1.0-1.4 s after the work was done,
        # each close a cascade of thread wake-ups through the shared jump connection; now ~50 ms.
        self._sessions.clear()
        for gateways in self._gateways:
            gateways.close()
        for t in self._transports.values():
            t.close()  # what is left: hosts without a jump host, and local state
        self._transports.clear()


def in_background(fn: Callable[[T], object], items: Iterable[T], workers: int, name: str) -> list[threading.Thread]:
    """``fn(item)`` for every item on at most ``workers`` daemon threads; return at once.

    For work started ahead of need (connections, agent starts) that must not hold up the process's
    exit: daemon threads, like one thread per item, but ``workers`` of them pulling from one queue,
    so 10,000 hosts cost ``workers`` threads and ``workers`` handshakes in flight, not 10,000.
    An exception in ``fn`` ends nothing but that item (fn reports its own failures).
    """
    queue = list(items)
    queue.reverse()  # pop() from the end: items start in the order given
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if not queue:
                    return
                item = queue.pop()
            try:
                fn(item)
            except Exception:  # a background start is best effort; its caller reports failures
                log.debug("%s: background work failed", name, exc_info=True)

    threads = [
        threading.Thread(target=work, name=f"{name}-{i}", daemon=True) for i in range(max(0, min(workers, len(queue))))
    ]
    for t in threads:
        t.start()
    return threads
