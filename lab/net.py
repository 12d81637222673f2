"""The lab bridge: the controller at 10.77.5.1/24, guests on it, no NAT and no forwarding."""

from __future__ import annotations

import json
from pathlib import Path

from lab import config
from lab.shell import LabError, log, run


def bridge_exists() -> bool:
    return Path("/sys/class/net", config.BRIDGE).exists()


def up() -> None:
    """Create upgbr0 with the controller address. Idempotent. Never touches ip_forward or NAT."""
    if not bridge_exists():
        run(["ip", "link", "add", "name", config.BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0"])
    address = f"{config.CONTROLLER_ADDRESS}/{config.PREFIX_LEN}"
    if address not in addresses():
        run(["ip", "addr", "add", address, "broadcast", config.BROADCAST, "dev", config.BRIDGE])
    run(["ip", "link", "set", config.BRIDGE, "up"], quiet=True)
    if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "0":
        log("warning: ip_forward is on on this machine; the lab does not need it and did not set it")


def down() -> None:
    if bridge_exists():
        run(["ip", "link", "del", config.BRIDGE])


def addresses() -> list[str]:
    out = run(["ip", "-j", "addr", "show", "dev", config.BRIDGE], capture=True, quiet=True).stdout
    return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(out) for a in link.get("addr_info", [])]


def veth_of(container: str) -> str:
    """The host-side veth of a container's eth0 (from lxc-info, which works even when frozen)."""
    out = run(["lxc-info", "-n", container], capture=True, quiet=True).stdout
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Link":
            return value.strip()
    raise LabError(f"no network link found for container {container} (is it running?)")
