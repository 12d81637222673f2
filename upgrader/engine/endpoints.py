"""Inventory hosts → transport endpoints (paths resolved against the inventory file)."""

from __future__ import annotations

from pathlib import Path

from upgrader.models.inventory import Host, Inventory, Jump
from upgrader.planning.planner import iter_hosts
from upgrader.transport.base import Endpoint


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
        out[name] = _endpoint(
            name,
            host,
            base,
            d.user,
            d.port,
            _path(base, d.ssh_key),
            known,
            _jump(dc_name, jump, base, d.user, d.port, _path(base, d.ssh_key), known),
        )
    return out


def _endpoint(
    name: str, host: Host, base: Path, user: str | None, port: int, key: str | None, known: str, jump: Endpoint | None
) -> Endpoint:
    return Endpoint(
        name=name,
        address=host.address,
        port=host.port or port,
        user=host.user or user or "root",
        ssh_key=_path(base, host.ssh_key) or key,
        known_hosts=known,
        jump=jump,
    )


def _jump(
    dc: str, jump: Jump | None, base: Path, user: str | None, port: int, key: str | None, known: str
) -> Endpoint | None:
    if jump is None:
        return None
    return Endpoint(
        name=f"{dc}-jump",
        address=jump.address,
        port=jump.port or port,
        user=jump.user or user or "root",
        ssh_key=_path(base, jump.ssh_key) or key,
        known_hosts=known,
    )
