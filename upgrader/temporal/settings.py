"""Where the Temporal server is: flags, else UPGRADER_TEMPORAL_*, else the inventory's ``engine.temporal``.

Each field is looked up on its own in that order, so an operator can point one run at a test server
with a flag while the namespace and TLS files still come from the inventory.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from upgrader.errors import RefusedError
from upgrader.models.inventory import Inventory

ENV = "UPGRADER_TEMPORAL_"
FIELDS = ("address", "namespace", "tls_ca", "tls_cert", "tls_key")
CONTROL_QUEUE = "upgrader-control"  # workflows and journal records: the desk's worker (`worker --control`)


def queue(datacenter: str) -> str:
    """The task queue of a datacenter's workers: its hosts' activities go there."""
    return f"upgrader-dc-{datacenter}"


@dataclass(frozen=True)
class Settings:
    address: str
    namespace: str = "default"
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def tls(self) -> bool:
        return any((self.tls_ca, self.tls_cert, self.tls_key))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("temporal engine (default: $UPGRADER_TEMPORAL_*, else the inventory's engine:)")
    g.add_argument("--temporal-address", metavar="HOST:PORT", help="the Temporal frontend")
    g.add_argument("--temporal-namespace", metavar="NAME")
    g.add_argument("--temporal-tls-ca", type=Path, metavar="FILE", help="CA bundle (turns TLS on)")
    g.add_argument("--temporal-tls-cert", type=Path, metavar="FILE", help="client certificate (mutual TLS)")
    g.add_argument("--temporal-tls-key", type=Path, metavar="FILE")


def resolve(args: argparse.Namespace, inventory: Inventory, inventory_path: Path) -> Settings:
    configured = inventory.engine.temporal
    base = inventory_path.resolve().parent
    found: dict[str, str | None] = {}
    for name in FIELDS:
        flag = getattr(args, f"temporal_{name}", None)
        from_inventory = getattr(configured, name) if configured is not None else None
        if from_inventory is not None and name.startswith("tls_"):
            from_inventory = str(base / from_inventory)  # relative to the inventory, like its SSH keys
        found[name] = str(flag) if flag is not None else os.environ.get(ENV + name.upper()) or from_inventory
    if not found["address"]:
        raise RefusedError(
            "--engine temporal needs the server's address",
            f"pass --temporal-address HOST:PORT, set {ENV}ADDRESS, or add engine: temporal: "
            f"address: to {inventory_path}",
        )
    if bool(found["tls_cert"]) != bool(found["tls_key"]):
        raise RefusedError(
            "a TLS client certificate needs its key (and the key its certificate)",
            "give both --temporal-tls-cert and --temporal-tls-key, or neither",
        )
    paths = {n: Path(v) for n in FIELDS[2:] if (v := found[n])}
    return Settings(address=str(found["address"]), namespace=found["namespace"] or "default", **paths)


def to_record(found: Settings) -> dict[str, str | None]:
    """For the run's journal: where its workflow lives (no secrets: TLS files are named, never read in)."""
    return {name: None if getattr(found, name) is None else str(getattr(found, name)) for name in FIELDS}


def of_record(recorded: dict[str, object]) -> Settings:
    """Where a recorded run's workflow lives; UPGRADER_TEMPORAL_* override (the server moved, a new CA)."""
    values = {n: os.environ.get(ENV + n.upper()) or recorded.get(n) for n in FIELDS}
    paths = {n: Path(str(v)) for n in FIELDS[2:] if (v := values[n])}
    return Settings(address=str(values["address"]), namespace=str(values["namespace"] or "default"), **paths)
