"""Fault injection on lab machines, by name (`ny5-1` -> container `upg-ny5-1`; `ny5-jump` too).

    kill / start          power off (lxc-stop -k) / boot again
    freeze / unfreeze     the host hangs: TCP accepts, no SSH banner (lxc-freeze)
    cut / restore         its link goes down / up (host-side veth): packets vanish
    sshd_stop / sshd_start

`heal` undoes whatever of these is in effect, and is safe to call on a healthy host.  On a jump
host, `cut` takes down its leg on upgbr0: the controller loses the whole datacenter.
"""

from __future__ import annotations

import shlex
import subprocess

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
        net.isolate_datacenters()  # the new veth must not get an IPv6 link-local address
        if config.host(host).is_jump:
            # in case the guest came back with another MAC, do not wait for the ARP entry to age
            run(
                ["ip", "neigh", "flush", "dev", config.BRIDGE, "to", config.host(host).address], check=False, quiet=True
            )
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
    if state != "STOPPED":  # a host that is booting starts sshd itself (lxc-attach may fail that early)
        lxc.attach(container, "systemctl is-active --quiet ssh.service || systemctl start ssh.service", timeout=30)
    wait_for_ssh(host, wait)


# Polls for an SSH banner until it comes or the time is up; prints what it got.
BANNER_SCRIPT = r"""
import socket, sys, time
address, seconds = sys.argv[1], float(sys.argv[2])
deadline = time.monotonic() + seconds
got = b""
while True:
    try:
        with socket.create_connection((address, 22), timeout=1) as sock:
            sock.settimeout(1)
            got = sock.recv(64)
    except OSError:
        got = b""
    if got.startswith(b"SSH-") or time.monotonic() >= deadline:
        break
    time.sleep(0.1)
sys.stdout.write(got.decode("ascii", "replace"))
"""


def ssh_banner(host: str, timeout: float = 2.0) -> bytes | None:
    """The first bytes `host`'s sshd sends, as its SSH clients would see them.

    A jump host is probed from the controller; a datacenter host from its jump host's network
    namespace (`lxc-attach -s NETWORK` running the controller's python3): the controller has no
    route to it, and that is the path every SSH connection to it takes.
    """
    target = config.host(host)
    if target.is_jump:
        return _banner(target.address, timeout)
    jump = config.datacenter(target.dc).jump
    argv = [
        "lxc-attach",
        "-n",
        jump.container,
        "-s",
        "NETWORK",
        "--",
        "python3",
        "-c",
        BANNER_SCRIPT,
        target.address,
        str(timeout),
    ]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout + 10, check=False)
    except subprocess.TimeoutExpired:
        return None
    return proc.stdout or None


def _banner(address: str, timeout: float) -> bytes | None:
    proc = subprocess.run(
        ["python3", "-c", BANNER_SCRIPT, address, str(timeout)], capture_output=True, timeout=timeout + 10, check=False
    )
    return proc.stdout or None


def wait_for_ssh(host: str, timeout: float = 30) -> None:
    banner = ssh_banner(host, timeout)
    if not (banner and banner.startswith(b"SSH-")):
        target = config.host(host)
        raise LabError(f"{host}: no SSH banner from {shlex.quote(target.address)}:22 within {timeout} s")
