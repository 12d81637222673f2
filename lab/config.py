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
BRIDGE = "upgbr0"
CONTROLLER_ADDRESS = "10.77.5.1"
PREFIX_LEN = 24
BROADCAST = "10.77.5.255"
CONTAINER_PREFIX = "upg-"
HOSTS_PER_DC_ENV = "UPGRADER_LAB_HOSTS_PER_DC"
DEFAULT_HOSTS_PER_DC = 2

# chromium + a font: the HTML report test renders the page headless and looks at the screenshot.
# lxc-templates holds /usr/share/lxc/config/debian.common.conf, which the box's lxc-config includes;
# it is only a Recommends of lxc, so --no-install-recommends leaves it out on a fresh machine.
APT_PACKAGES = ("vagrant", "vagrant-lxc", "lxc", "lxc-templates", "debootstrap", "rsync", "sudo", "python3-venv",
                "chromium", "fonts-dejavu-core")

COMPONENTS = tuple(PORTS)  # feedhandler, ordergw, riskgw
BASELINES = RELEASE_BASELINES  # feedhandler 3.0.0, ordergw 5.0.0, riskgw 2.4.0


@dataclass(frozen=True)
class Datacenter:
    name: str
    first_octet: int  # host N gets 10.77.5.(first_octet + N)
    timezone: str
    markets: tuple[str, ...]


DATACENTERS = (
    Datacenter("ny5", 10, "America/New_York", ("XNYS", "XNAS")),
    Datacenter("ch2", 50, "America/Chicago", ("XCBO", "XNYS")),
)


@dataclass(frozen=True)
class Host:
    name: str
    dc: str
    address: str

    @property
    def container(self) -> str:
        return CONTAINER_PREFIX + self.name


def hosts_per_dc() -> int:
    return int(os.environ.get(HOSTS_PER_DC_ENV, DEFAULT_HOSTS_PER_DC))


def lab_hosts(per_dc: int | None = None) -> list[Host]:
    """The hosts the Vagrantfile defines for `per_dc` hosts per datacenter (same order)."""
    count = hosts_per_dc() if per_dc is None else per_dc
    return [
        Host(f"{dc.name}-{n}", dc.name, f"10.77.5.{dc.first_octet + n}")
        for dc in DATACENTERS
        for n in range(1, count + 1)
    ]


def host(name: str) -> Host:
    """Look a host up by name (`ny5-1`); works for any count up to 40 per datacenter."""
    for candidate in lab_hosts(40):
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown lab host {name!r} (expected ny5-N or ch2-N)")
