"""Fixtures for tests that need the Vagrant/LXC test hosts (every test here is marked `vm`).

The `lab` fixture brings the hosts up once per session, or reuses a running lab and leaves
it running. If it brought them up it destroys them at the end, unless UPGRADER_LAB_KEEP=1.

The lab is one set of containers and bridges per machine, so a pytest session holds an exclusive
flock on LAB_LOCK for as long as it uses them: two sessions started side by side run one after the
other instead of resetting each other's hosts mid-test.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest
import testinfra

from lab import config, control, lxc, vagrant
from lab import faults as lab_faults
from tests.vm.upgrader_cli import Upgrader

HERE = Path(__file__).resolve().parent
LAB_LOCK = Path(os.environ.get("UPGRADER_LAB_LOCK", "/run/lock/upgrader-lab.lock"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.vm)


def _lab_is_up(hosts: list[config.Host]) -> bool:
    return (
        config.INVENTORY.exists()
        and config.KNOWN_HOSTS.exists()
        and config.SSH_CONFIG.exists()
        and all(lxc.state(h.container) == "RUNNING" for h in config.jump_hosts() + hosts)
    )


@pytest.fixture(scope="session")
def lab() -> Iterator[list[config.Host]]:
    """The running lab's hosts (brought up here if needed), held under LAB_LOCK for the session."""
    if os.environ.get("UPGRADER_LAB_LOCK_HELD") == "1":  # lab/test.sh holds it for this whole run
        yield from _lab_session()
        return
    LAB_LOCK.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(LAB_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"[lab] waiting for {LAB_LOCK}: another test session is using the lab", file=sys.stderr)
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        yield from _lab_session()
    finally:
        os.close(lock)


def _lab_session() -> Iterator[list[config.Host]]:
    hosts = config.lab_hosts(vagrant.current_per_dc())
    brought_up = not _lab_is_up(hosts)
    if brought_up:
        control.up()
    else:
        control.reset()
    yield hosts
    control.close_ssh_masters()
    if brought_up and os.environ.get("UPGRADER_LAB_KEEP") != "1":
        control.down()


@pytest.fixture(scope="session")
def vm_inventory(lab: list[config.Host]) -> Path:
    """Path of inventories/vagrant.yml."""
    return config.INVENTORY


@pytest.fixture(scope="session")
def vm_hosts(lab: list[config.Host]) -> list[str]:
    """Host names: ny5-1, ny5-2, ..., ch2-1, ..."""
    return [h.name for h in lab]


@pytest.fixture
def reset_hosts(lab: list[config.Host]) -> None:
    """Put every host back to the baseline before a test that changes them."""
    control.reset()


@pytest.fixture
def upgrader(tmp_path: Path, vm_inventory: Path, reset_hosts: None) -> Upgrader:
    """`upgrader …` with a state directory of its own, on hosts put back to the baseline first."""
    return Upgrader(tmp_path / "state", vm_inventory)


@pytest.fixture(scope="session")
def vm_host(lab: list[config.Host]) -> Callable[[str], testinfra.host.Host]:
    """vm_host("ny5-1") -> a testinfra host over OpenSSH with strict host keys (.lab/ssh_config)."""
    cache: dict[str, testinfra.host.Host] = {}

    def get(name: str) -> testinfra.host.Host:
        if name not in cache:
            cache[name] = testinfra.get_host(f"ssh://{name}", ssh_config=str(config.SSH_CONFIG))
        return cache[name]

    return get


def private_key(name: str) -> Path:
    return config.REPO / ".vagrant" / "machines" / name / "lxc" / "private_key"


def paramiko_client(name: str, timeout: float = 5, known_hosts: Path | None = None) -> paramiko.SSHClient:
    """A fresh Paramiko client to a lab machine, rejecting unknown host keys on every hop.

    A datacenter host is reached the only way there is: a direct-tcpip channel through its jump host
    (whose client is closed with it).  ``known_hosts`` replaces .lab/known_hosts for the last hop.
    """
    target = config.host(name)
    sock = None
    jump_client = None
    if not target.is_jump:
        jump_client = paramiko_client(config.datacenter(target.dc).jump.name, timeout)
        try:
            sock = jump_client.get_transport().open_channel(  # type: ignore[union-attr]
                "direct-tcpip", (target.address, 22), ("127.0.0.1", 0), timeout=timeout
            )
        except Exception:
            jump_client.close()
            raise
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts or config.KNOWN_HOSTS))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            target.address,
            username="vagrant",
            key_filename=str(private_key(name)),
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
            allow_agent=False,
            look_for_keys=False,
            sock=sock,
        )
    except Exception:
        if jump_client is not None:
            jump_client.close()
        raise
    if jump_client is not None:
        original = client.close

        def close() -> None:
            original()
            jump_client.close()

        client.close = close  # type: ignore[method-assign]
    return client


@pytest.fixture(scope="session")
def ssh_connect(lab: list[config.Host]) -> Callable[..., paramiko.SSHClient]:
    """ssh_connect('ny5-1', timeout=5) -> a fresh Paramiko client (through the jump host), rejecting
    unknown host keys."""
    return paramiko_client


class Faults:
    """lab.faults for tests; every host touched is healed at teardown, whatever was done to it."""

    def __init__(self) -> None:
        self.touched: set[str] = set()

    def __getattr__(self, action: str) -> Callable[..., None]:
        function = getattr(lab_faults, action)

        def apply(host: str, *args: object, **kwargs: object) -> None:
            self.touched.add(host)
            function(host, *args, **kwargs)

        return apply

    def heal_all(self) -> None:
        for name in sorted(self.touched):
            lab_faults.heal(name)


@pytest.fixture
def faults(lab: list[config.Host]) -> Iterator[Faults]:
    tracker = Faults()
    yield tracker
    tracker.heal_all()
