"""The lab's bridges: no NAT, no forwarding, and the controller on upgbr0 only.

    upgbr0   10.77.5.1/24: the controller and one leg of each jump host
    upgny5   10.77.10.0/24: ny5's hosts and the ny5 jump host's other leg   (no controller address)
    upgch2   10.77.50.0/24: ch2's hosts and the ch2 jump host's other leg   (no controller address)

A datacenter bridge gets no IPv4 address and no IPv6 at all (not even link-local), nor do the
controller-side ends of the veths on it: the controller has no route to a datacenter host.

"No route" must not mean "the default route": this machine has one (its uplink), and a packet for
10.77.10.11 would leave through it to whatever answers out there.  So each datacenter subnet gets an
`unreachable` route on the controller: a connect fails at once with EHOSTUNREACH, nothing is sent.
"""

from __future__ import annotations

import json
from pathlib import Path

from lab import config
from lab.shell import LabError, log, run


def bridge_exists(name: str = config.BRIDGE) -> bool:
    return Path("/sys/class/net", name).exists()


def bridges() -> list[str]:
    return [config.BRIDGE, *(dc.bridge for dc in config.DATACENTERS)]


def _add_bridge(name: str) -> None:
    if not bridge_exists(name):
        run(["ip", "link", "add", "name", name, "type", "bridge", "stp_state", "0", "forward_delay", "0"])


def up() -> None:
    """Create the bridges (idempotent). Never touches ip_forward or NAT."""
    _add_bridge(config.BRIDGE)
    address = f"{config.CONTROLLER_ADDRESS}/{config.PREFIX_LEN}"
    if address not in addresses():
        run(["ip", "addr", "add", address, "broadcast", config.BROADCAST, "dev", config.BRIDGE])
    run(["ip", "link", "set", config.BRIDGE, "up"], quiet=True)
    for dc in config.DATACENTERS:
        # First, before any guest exists: nothing for the datacenter may ever take the default route.
        run(["ip", "route", "replace", "unreachable", dc.subnet_cidr], quiet=True)
        _add_bridge(dc.bridge)
        no_ipv6(dc.bridge)  # before it goes up: no link-local address is ever assigned
        run(["ip", "link", "set", dc.bridge, "up"], quiet=True)
        if addresses(dc.bridge):
            raise LabError(
                f"bridge {dc.bridge} has addresses {addresses(dc.bridge)}; the controller must have "
                f"none there (remove them: `ip addr flush dev {dc.bridge}`)"
            )
    if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "0":
        log("warning: ip_forward is on on this machine; the lab does not need it and did not set it")


def down() -> None:
    for name in reversed(bridges()):
        if bridge_exists(name):
            run(["ip", "link", "del", name])
    # The unreachable routes stay: harmless, and a datacenter address must never take the default route.


def blocked(cidr: str) -> bool:
    """True if the controller's route to ``cidr`` is an `unreachable` one."""
    out = run(["ip", "-j", "route", "show", "exact", cidr, "type", "unreachable"], capture=True, quiet=True).stdout
    return bool(json.loads(out or "[]"))


def no_ipv6(interface: str) -> None:
    path = Path("/proc/sys/net/ipv6/conf", interface, "disable_ipv6")
    if path.exists() and path.read_text().strip() != "1":
        path.write_text("1\n")


def isolate_datacenters() -> None:
    """No IPv6 on the controller's end of any veth on a datacenter bridge (LXC makes them per boot).

    Without this each gets a link-local address, and the controller could reach the hosts through it.
    """
    for dc in config.DATACENTERS:
        if bridge_exists(dc.bridge):
            for port in ports(dc.bridge):
                no_ipv6(port)


def ports(bridge: str) -> list[str]:
    out = run(["ip", "-j", "link", "show", "master", bridge], capture=True, quiet=True).stdout
    return [link["ifname"] for link in json.loads(out or "[]")]


def addresses(device: str = config.BRIDGE) -> list[str]:
    out = run(["ip", "-j", "addr", "show", "dev", device], capture=True, quiet=True).stdout
    return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(out) for a in link.get("addr_info", [])]


def veth_of(container: str) -> str:
    """The host-side veth of a container's first leg (eth0), from lxc-info (works even when frozen).

    For a jump host that is its leg on upgbr0: cutting it cuts the controller off the datacenter.
    """
    out = run(["lxc-info", "-n", container], capture=True, quiet=True).stdout
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Link":
            return value.strip()
    raise LabError(f"no network link found for container {container} (is it running?)")
