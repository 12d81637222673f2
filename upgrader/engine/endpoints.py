"""Inventory hosts → transport endpoints (paths resolved against the inventory file)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from upgrader.engine import remote
from upgrader.models.inventory import Host, Inventory, Jump
from upgrader.planning.planner import iter_hosts
from upgrader.transport.base import Endpoint, Timeouts, Transport

if TYPE_CHECKING:
    from upgrader.transport.fabric_adapter import Gateways

T = TypeVar("T")


def _path(base: Path, value: str | None) -> str | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p))


def endpoints(inventory: Inventory, inventory_path: Path) -> dict[str, Endpoint]:
    base = inventory_path.resolve().parent
    d = inventory.defaults
    known = _path(base, inventory.known_hosts) or str(Path("~/.ssh/known_hosts").expanduser())
    out: dict[str, Endpoint] = {}
    for dc_name, name, host in iter_hosts(inventory):
        jump = inventory.datacenters[dc_name].jump
        out[name] = _endpoint(name, host, base, d.user, d.port, _path(base, d.ssh_key), known,
                              _jump(dc_name, jump, base, d.user, d.port, _path(base, d.ssh_key), known))
    return out


def _endpoint(name: str, host: Host, base: Path, user: str | None, port: int, key: str | None, known: str,
              jump: Endpoint | None) -> Endpoint:
    return Endpoint(name=name, address=host.address, port=host.port or port, user=host.user or user or "root",
                    ssh_key=_path(base, host.ssh_key) or key, known_hosts=known, jump=jump)


def _jump(dc: str, jump: Jump | None, base: Path, user: str | None, port: int, key: str | None,
          known: str) -> Endpoint | None:
    if jump is None:
        return None
    return Endpoint(name=f"{dc}-jump", address=jump.address, port=jump.port or port,
                    user=jump.user or user or "root", ssh_key=_path(base, jump.ssh_key) or key, known_hosts=known)


class Pool:
    """Transports for a run, opened lazily, reused, closed together; runs work on hosts in parallel.

    The Fabric transports of a pool share its ``Gateways``: one connection per jump host for the
    whole run (each host behind it is a channel in it), closed with the pool, and the count of
    handshakes that were refused or reset and retried (``handshake_retries``, for the run's records).
    """

    def __init__(self, endpoints: dict[str, Endpoint], factory: Callable[[Endpoint], Transport] | None = None,
                 timeouts: Timeouts | None = None, parallel: int = 32) -> None:
        self._endpoints = endpoints
        self._timeouts = timeouts or Timeouts()
        self._factory = factory or self._fabric
        self._transports: dict[str, Transport] = {}
        self._gateways: list[Gateways] = []  # [0] makes new transports; more come with adopted connections
        self.parallel = parallel

    def _fabric(self, endpoint: Endpoint) -> Transport:
        # imported lazily: planning stays light
        from upgrader.transport.fabric_adapter import FabricTransport, Gateways

        if not self._gateways:
            self._gateways.append(Gateways(self._timeouts))
        return FabricTransport(endpoint, self._timeouts, self._gateways[0])

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
        if host not in self._transports:
            self._transports[host] = self._factory(self._endpoints[host])
        return self._transports[host]

    def each(self, hosts: Iterable[str], fn: Callable[[str], T], limit: int | None = None) -> dict[str, T]:
        """fn(host) for every host in parallel; exceptions are returned as values, like Fabric's GroupResult."""
        hosts = list(hosts)
        out: dict[str, T] = {}
        if not hosts:
            return out
        for h in hosts:
            self[h]  # create transports in this thread; connections open in the workers
        with ThreadPoolExecutor(max_workers=max(1, min(limit or self.parallel, len(hosts)))) as ex:
            futures = {h: ex.submit(fn, h) for h in hosts}
            for h, fut in futures.items():
                try:
                    out[h] = fut.result()
                except Exception as exc:
                    out[h] = exc  # type: ignore[assignment]
        return out

    def adopt(self, host: str, transport: Transport) -> None:
        """Use ``transport`` (already connecting) for ``host`` from now on."""
        self._transports[host] = transport

    def warm(self, hosts: Iterable[str], python: str) -> None:
        """Start connecting to ``hosts`` and their agents (engine.remote.start) in the background; return at once.

        The SSH handshakes and agent starts (mostly waiting on the hosts) then overlap the rest of
        the start-up: loading the playbook, the journal, the remaining imports.  Each host's first
        call waits for its own connection; a failure is reported by that call, like any other.
        Daemon threads: a host that never answers must not hold up the process's exit after the
        run is decided.
        """
        from upgrader.engine.limits import in_background

        # At most --parallel threads (a queue), not one per host waiting on a semaphore.
        in_background(lambda t: remote.start(t, python), [self[h] for h in hosts], self.parallel, "connect")

    def close(self) -> None:
        for t in self._transports.values():
            t.close()
        self._transports.clear()
        for gateways in self._gateways:
            gateways.close()  # the jump connections, after every channel in them
