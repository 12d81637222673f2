"""The scale lab's bridges, made the way lab/net.py makes the 4-host lab's: no NAT, no forwarding.

    upsbr0  10.78.0.1/24  the controller and the jump hosts' first legs (.2 ny5, .3 ch2)
    upsny5  10.78.1.0/24  ny5's hosts and its jump host's second leg   (no controller address, no IPv6)
    upsch2  10.78.2.0/24  ch2's hosts and its jump host's second leg   (no controller address, no IPv6)

Each datacenter subnet gets an ``unreachable`` route on the controller first, so a packet for it
fails at once instead of taking this machine's default route.
"""

from __future__ import annotations

import json
from pathlib import Path

from lab.net import no_ipv6, ports
from lab.scale_hosts import CONTROLLER_ADDRESS, CONTROLLER_BRIDGE, DATACENTERS
from lab.shell import LabError, log, run

BRIDGES = (CONTROLLER_BRIDGE, *(b for b, _, _ in DATACENTERS.values()))
SUBNETS = tuple(f"10.78.{octet}.0/24" for _, octet, _ in DATACENTERS.values())


def present() -> list[str]:
    return [b for b in BRIDGES if Path("/sys/class/net", b).exists()]


def _bridge(name: str) -> None:
    if not Path("/sys/class/net", name).exists():
        run(["ip", "link", "add", "name", name, "type", "bridge", "stp_state", "0", "forward_delay", "0"], quiet=True)


def up() -> None:
    for cidr in SUBNETS:
        run(["ip", "route", "replace", "unreachable", cidr], quiet=True)
    _bridge(CONTROLLER_BRIDGE)
    out = json.loads(run(["ip", "-j", "addr", "show", "dev", CONTROLLER_BRIDGE], capture=True, quiet=True).stdout)
    if not any(a.get("local") == CONTROLLER_ADDRESS for link in out for a in link.get("addr_info", [])):
        run(
            ["ip", "addr", "add", f"{CONTROLLER_ADDRESS}/24", "broadcast", "10.78.0.255", "dev", CONTROLLER_BRIDGE],
            quiet=True,
        )
    run(["ip", "link", "set", CONTROLLER_BRIDGE, "up"], quiet=True)
    for bridge, _, _ in DATACENTERS.values():
        _bridge(bridge)
        no_ipv6(bridge)
        run(["ip", "link", "set", bridge, "up"], quiet=True)
    if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "0":
        log("warning: ip_forward is on on this machine; the scale lab does not need it and did not set it")


def isolate() -> None:
    """No IPv6 on the controller's end of any veth on a datacenter bridge (else a link-local route exists)."""
    for bridge, _, _ in DATACENTERS.values():
        for port in ports(bridge):
            no_ipv6(port)


def down() -> None:
    for name in reversed(BRIDGES):
        if Path("/sys/class/net", name).exists():
            run(["ip", "link", "del", name], quiet=True)
    for cidr in SUBNETS:  # nothing is left to send to: the routes go with the lab
        run(["ip", "route", "del", "unreachable", cidr], check=False, quiet=True, capture=True)


def prepare_kernel(containers: int) -> None:
    """Each container's systemd takes inotify instances from root's shared budget (default 128 in all):
    raise it to fit ``containers`` (a lab machine setting, like the LXC defaults lab/install.py sets)."""
    need = {
        "fs/inotify/max_user_instances": 64 * containers + 512,
        "fs/inotify/max_user_watches": 4096 * containers + 65536,
    }
    for key, value in need.items():
        path = Path("/proc/sys", key)
        if int(path.read_text()) < value:
            path.write_text(f"{value}\n")
            log(f"sysctl {key.replace('/', '.')} = {value} (for {containers} containers)")
    if not Path("/proc/sys/fs/inotify/max_user_instances").exists():
        raise LabError("no inotify sysctls on this kernel")
