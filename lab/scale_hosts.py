"""Names and addresses of the scale lab (lab/scale.py).  Nothing here touches the machine."""

from __future__ import annotations

from dataclasses import dataclass

from lab import config

PREFIX = "ups-"
BASE = "ups-base"
SCALE_DIR = config.STATE_DIR / "scale"
CONTROLLER_BRIDGE = "upsbr0"
CONTROLLER_ADDRESS = "10.78.0.1"
# datacenter: (bridge, subnet octet, jump host's leg on upsbr0)
DATACENTERS = {"ny5": ("upsny5", 1, 2), "ch2": ("upsch2", 2, 3)}
JUMPS = tuple(f"{dc}-jump" for dc in DATACENTERS)
JUMP_INNER = 2  # the jump host's leg on its datacenter bridge: 10.78.<subnet>.2
FIRST_HOST = 10  # host i (from 1): 10.78.<subnet>.(10+i)
MAX_PER_DC = 244


@dataclass(frozen=True)
class ScaleHost:
    name: str
    dc: str
    address: str  # what the controller (or the jump host) connects to
    legs: tuple[tuple[str, str, str], ...]  # (bridge, address, broadcast) per interface, eth0 first

    @property
    def container(self) -> str:
        return PREFIX + self.name

    @property
    def is_jump(self) -> bool:
        return self.name.endswith("-jump")


def subnet(dc: str) -> str:
    return f"10.78.{DATACENTERS[dc][1]}"


def machines(per_dc: int) -> list[ScaleHost]:
    """The 2 jump hosts, then per_dc hosts in each datacenter (ny5-001, …, ch2-001, …)."""
    if not 1 <= per_dc <= MAX_PER_DC:
        raise ValueError(f"--hosts-per-dc must be 1..{MAX_PER_DC}")
    out = []
    for dc, (bridge, _, jump_octet) in DATACENTERS.items():
        outer = f"10.78.0.{jump_octet}"
        out.append(
            ScaleHost(
                f"{dc}-jump",
                dc,
                outer,
                (
                    (CONTROLLER_BRIDGE, outer, "10.78.0.255"),
                    (bridge, f"{subnet(dc)}.{JUMP_INNER}", f"{subnet(dc)}.255"),
                ),
            )
        )
    for dc, (bridge, _, _) in DATACENTERS.items():
        for i in range(1, per_dc + 1):
            address = f"{subnet(dc)}.{FIRST_HOST + i}"
            out.append(ScaleHost(f"{dc}-{i:03d}", dc, address, ((bridge, address, f"{subnet(dc)}.255"),)))
    return out
