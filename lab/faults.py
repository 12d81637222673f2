"""Fault injection on lab hosts, by host name (`ny5-1` -> container `upg-ny5-1`).

    kill / start          power off (lxc-stop -k) / boot again
    freeze / unfreeze     the host hangs: TCP accepts, no SSH banner (lxc-freeze)
    cut / restore         its link goes down / up (host-side veth): packets vanish
    sshd_stop / sshd_start

`heal` undoes whatever of these is in effect, and is safe to call on a healthy host.
"""

from __future__ import annotations

import socket
import time

from lab import config, lxc, net
from lab.shell import LabError, run


def _container(host: str) -> str:
    return config.host(host).container


def kill(host: str) -> None:
    run(["lxc-stop", "-k", "-n", _container(host)])


def start(host: str, wait: float = 30) -> None:
    """Boot a stopped host; with wait, return once its sshd sends a banner."""
    container = _container(host)
    if lxc.state(container) != "RUNNING":
        run(["lxc-start", "-d", "-n", container])
        # in case the guest came back with another MAC, do not wait for the ARP entry to age
        run(["ip", "neigh", "flush", "dev", config.BRIDGE, "to", config.host(host).address],
            check=False, quiet=True)
    if wait:
        wait_for_ssh(host, wait)


def freeze(host: str) -> None:
    run(["lxc-freeze", "-n", _container(host)])


def unfreeze(host: str) -> None:
    run(["lxc-unfreeze", "-n", _container(host)])


def cut(host: str) -> None:
    run(["ip", "link", "set", "dev", net.veth_of(_container(host)), "down"])


def restore(host: str) -> None:
    run(["ip", "link", "set", "dev", net.veth_of(_container(host)), "up"])


def sshd_stop(host: str) -> None:
    lxc.attach(_container(host), "systemctl stop ssh.service", timeout=30)


def sshd_start(host: str) -> None:
    lxc.attach(_container(host), "systemctl start ssh.service", timeout=30)


def link_up(host: str) -> bool:
    veth = net.veth_of(_container(host))
    out = run(["ip", "-o", "link", "show", "dev", veth], capture=True, quiet=True).stdout
    return ",UP" in out or "<UP" in out


def heal(host: str, wait: float = 30) -> None:
    """Undo every fault on `host` (in the order that lets the next step work)."""
    container = _container(host)
    state = lxc.state(container)
    if state == "FROZEN":
        unfreeze(host)
    elif state == "STOPPED":
        start(host, wait=0)
    elif state == "ABSENT":
        raise LabError(f"{host}: container {container} does not exist")
    if not link_up(host):
        restore(host)
    lxc.attach(container, "systemctl is-active --quiet ssh.service || systemctl start ssh.service", timeout=30)
    wait_for_ssh(host, wait)


def ssh_banner(address: str, timeout: float = 2.0) -> bytes | None:
    try:
        with socket.create_connection((address, 22), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64)
    except OSError:
        return None


def wait_for_ssh(host: str, timeout: float = 30) -> None:
    address = config.host(host).address
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        banner = ssh_banner(address, timeout=1.0)
        if banner and banner.startswith(b"SSH-"):
            return
        time.sleep(0.1)
    raise LabError(f"{host}: no SSH banner from {address}:22 within {timeout} s")
