"""Names, addresses and paths of the lab. Everything else derives from here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from testapp.releases import BASELINES as RELEASE_BASELINES
from testapp.releases import PORTS

REPO = Path(__file__).resolve().parent.parent
STATE_DIR = REPO / ".lab"
BOX_DIR = STATE_DIR / "boxes"
KNOWN_HOSTS = STATE_DIR / "known_hosts"
SSH_CONFIG = STATE_DIR / "ssh_config"
TIMINGS = STATE_DIR / "timings.json"
LAB_STATE = STATE_DIR / "lab.json"
INVENTORY = REPO / "inventories" / "vagrant.yml"
ARTIFACTS = REPO / "build" / "artifacts"

BOX_NAME = "upgrader/bookworm-lxc"
# The controller's bridge: the controller and one leg of each jump host.  Nothing else.
BRIDGE = "upgbr0"
CONTROLLER_ADDRESS = "10.77.5.1"
PREFIX_LEN = 24
BROADCAST = "10.77.5.255"
CONTAINER_PREFIX = "upg-"
HOSTS_PER_DC_ENV = "UPGRADER_LAB_HOSTS_PER_DC"
DEFAULT_HOSTS_PER_DC = 2
SSH_PORT = 22

# chromium + a font: the HTML report test renders the page headless and looks at the screenshot.
# lxc-templates holds /usr/share/lxc/config/debian.common.conf, which the box's lxc-config includes;
# it is only a Recommends of lxc, so --no-install-recommends leaves it out on a fresh machine.
APT_PACKAGES = (
    "vagrant",
    "vagrant-lxc",
    "lxc",
    "lxc-templates",
    "debootstrap",
    "rsync",
    "sudo",
    "python3-venv",
    "chromium",
    "fonts-dejavu-core",
)

COMPONENTS = tuple(PORTS)  # feedhandler, ordergw, riskgw
BASELINES = RELEASE_BASELINES  # feedhandler 3.0.0, ordergw 5.0.0, riskgw 2.4.0


@dataclass(frozen=True)
class Datacenter:
    """A datacenter: its own bridge and subnet, reachable from the controller only through its jump host.

    The controller has no address on the datacenter's bridge (so no route to its hosts); the jump host
    has one leg on upgbr0 and one here, with IP forwarding off (a fresh network namespace's default).
    """

    name: str
    subnet: int  # the datacenter's hosts live in 10.77.<subnet>.0/24
    jump_octet: int  # the jump host's leg on upgbr0: 10.77.5.<jump_octet>
    timezone: str
    markets: tuple[str, ...]

    @property
    def bridge(self) -> str:
        return f"upg{self.name}"  # interface names are at most 15 characters

    @property
    def subnet_cidr(self) -> str:
        return f"10.77.{self.subnet}.0/24"

    @property
    def broadcast(self) -> str:
        return f"10.77.{self.subnet}.255"

    def address(self, octet: int) -> str:
        return f"10.77.{self.subnet}.{octet}"

    @property
    def jump(self) -> Host:
        return Host(f"{self.name}-jump", self.name, f"10.77.5.{self.jump_octet}", inner=self.address(JUMP_INNER))


JUMP_INNER = 2  # the jump host's leg on the datacenter bridge: 10.77.<subnet>.2
FIRST_HOST = 10  # host N of a datacenter: 10.77.<subnet>.(10+N)

DATACENTERS = (
    Datacenter("ny5", 10, 2, "America/New_York", ("XNYS", "XNAS")),
    Datacenter("ch2", 50, 3, "America/Chicago", ("XCBO", "XNYS")),
)


@dataclass(frozen=True)
class Host:
    """A lab machine.  For a jump host, ``address`` is its leg on upgbr0 and ``inner`` its datacenter leg."""

    name: str
    dc: str
    address: str
    inner: str | None = None

    @property
    def container(self) -> str:
        return CONTAINER_PREFIX + self.name

    @property
    def is_jump(self) -> bool:
        return self.inner is not None

    @property
    def bridge(self) -> str:
        """The bridge its (first) leg is on."""
        return BRIDGE if self.is_jump else datacenter(self.dc).bridge


def datacenter(name: str) -> Datacenter:
    return next(dc for dc in DATACENTERS if dc.name == name)


def hosts_per_dc() -> int:
    return int(os.environ.get(HOSTS_PER_DC_ENV, DEFAULT_HOSTS_PER_DC))


def lab_hosts(per_dc: int | None = None) -> list[Host]:
    """The application hosts the Vagrantfile defines for `per_dc` hosts per datacenter (same order)."""
    count = hosts_per_dc() if per_dc is None else per_dc
    return [
        Host(f"{dc.name}-{n}", dc.name, dc.address(FIRST_HOST + n)) for dc in DATACENTERS for n in range(1, count + 1)
    ]


def jump_hosts() -> list[Host]:
    """One per datacenter: sshd and the vagrant user only, no test apps (seed skips them)."""
    return [dc.jump for dc in DATACENTERS]


def machines(per_dc: int | None = None) -> list[Host]:
    """Every lab machine: the jump hosts, then the application hosts."""
    return jump_hosts() + lab_hosts(per_dc)


def host(name: str) -> Host:
    """Look a machine up by name (`ny5-1`, `ny5-jump`); works for any count up to 40 per datacenter."""
    for candidate in machines(40):
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown lab host {name!r} (expected ny5-N, ch2-N, ny5-jump or ch2-jump)")
