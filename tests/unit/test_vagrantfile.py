"""The Vagrantfile's laptop provider (VirtualBox) gives the LXC lab's topology; it cannot run here, so it is read.

`ruby -c` checks the syntax; lab/vagrantfile_probe.rb evaluates the file with a stand-in for
Vagrant.configure and prints what each machine sets under each provider.  (`vagrant validate`
needs VBoxManage for the virtualbox provider, and ignores provider blocks with --ignore-provider.)
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
RUBY = shutil.which("ruby")
pytestmark = pytest.mark.skipif(RUBY is None, reason="ruby is not installed (vagrant ships one)")
DATACENTERS = {"ny5": (10, 2), "ch2": (50, 3)}  # subnet octet, jump host's octet on the controller net
CONTROLLER_NET = ipaddress.ip_network("10.77.5.0/24")


def _machines(per_dc: int) -> dict[str, Any]:
    assert RUBY is not None
    proc = subprocess.run(
        [RUBY, str(REPO / "lab" / "vagrantfile_probe.rb"), str(REPO / "Vagrantfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "UPGRADER_LAB_HOSTS_PER_DC": str(per_dc)},
    )
    machines: dict[str, Any] = json.loads(proc.stdout)
    return machines


def _virtualbox_legs(machine: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(ip, internal network or None for host-only) of each private network."""
    networks = machine["providers"]["virtualbox"]["network"]
    assert all(args == ["private_network"] for args, _ in networks), networks
    return [(options["ip"], options.get("virtualbox__intnet")) for _, options in networks]


def _lxc_legs(machine: dict[str, Any]) -> list[tuple[str, str]]:
    """(ip, bridge) of each LXC veth, from its customize lines."""
    settings = {args[0]: args[1] for args, _ in machine["providers"]["lxc"]["customize"]}
    count = len([k for k in settings if k.endswith(".ipv4.address")])
    return [(settings[f"net.{i}.ipv4.address"].split("/")[0], settings[f"net.{i}.link"]) for i in range(count)]


def test_the_vagrantfile_is_valid_ruby() -> None:
    assert RUBY is not None
    proc = subprocess.run([RUBY, "-c", str(REPO / "Vagrantfile")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Syntax OK" in proc.stdout, proc.stderr


@pytest.mark.parametrize("per_dc", [1, 2, 5])
def test_the_virtualbox_provider_gives_the_lab_topology(per_dc: int) -> None:
    machines = _machines(per_dc)
    expected = {f"{dc}-jump" for dc in DATACENTERS} | {f"{dc}-{n}" for dc in DATACENTERS for n in range(1, per_dc + 1)}
    assert set(machines) == expected
    for dc, (subnet, jump_octet) in DATACENTERS.items():
        dc_net = ipaddress.ip_network(f"10.77.{subnet}.0/24")
        jump = machines[f"{dc}-jump"]
        # two legs: the controller net (host-only, which the laptop is on) and the datacenter's internal net
        assert _virtualbox_legs(jump) == [(f"10.77.5.{jump_octet}", None), (f"10.77.{subnet}.2", f"upg{dc}")]
        for n in range(1, per_dc + 1):
            legs = _virtualbox_legs(machines[f"{dc}-{n}"])
            # one leg, on the datacenter's internal network only: nothing but the jump host reaches it
            assert legs == [(f"10.77.{subnet}.{10 + n}", f"upg{dc}")]
            assert all(
                ipaddress.ip_address(ip) in dc_net and ipaddress.ip_address(ip) not in CONTROLLER_NET for ip, _ in legs
            )
    for name, machine in machines.items():
        vb = machine["providers"]["virtualbox"]
        assert vb["set"]["box"] and vb["set"]["hostname"] == name
        # the NAT adapter Vagrant needs routes nothing: its default route goes at every boot, no forwarding
        [(_, provision)] = vb["provision"]
        assert provision["run"] == "always" and "ip route del default" in provision["inline"]
        assert "ip_forward=0" in provision["inline"]


def test_both_providers_give_every_machine_the_same_addresses() -> None:
    """The laptop lab is the LXC lab: same machines, same addresses, a bridge ↔ a network per leg."""
    for name, machine in _machines(2).items():
        vb, lxc = _virtualbox_legs(machine), _lxc_legs(machine)
        assert [ip for ip, _ in vb] == [ip for ip, _ in lxc], name
        assert [net or "upgbr0" for _, net in vb] == [bridge for _, bridge in lxc], name
