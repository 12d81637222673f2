"""Where the Temporal server is: flags, else UPGRADER_TEMPORAL_*, else the inventory's ``engine.temporal``.

Each field is looked up on its own in that order, so an operator can point one run at a test server
with a flag while the namespace and TLS files still come from the inventory.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from upgrader.errors import RefusedError

if TYPE_CHECKING:  # a type only: `runs` and `worker` build their parsers without the models
    from upgrader.models.inventory import Inventory

ENV = "UPGRADER_TEMPORAL_"
FIELDS = ("address", "namespace", "tls_ca", "tls_cert", "tls_key", "tls_server_name", "api_key_file")
PATHS = ("tls_ca", "tls_cert", "tls_key", "api_key_file")  # relative to the inventory when it names them
# The API key itself only from the environment (a systemd credential, a secrets manager), never a flag:
# a command line is readable by every user of the machine (ps), and never recorded (to_record).
API_KEY_ENV = ENV + "API_KEY"
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
    tls_server_name: str | None = None  # the name the server's certificate is checked against (and SNI)
    api_key_file: Path | None = None
    api_key: str | None = field(default=None, repr=False)  # from API_KEY_ENV; never printed or recorded

    @property
    def tls(self) -> bool:
        """TLS is on with any TLS setting, and with an API key (a bearer token must not cross in clear)."""
        return any((self.tls_ca, self.tls_cert, self.tls_key, self.tls_server_name, self.authenticated))

    @property
    def authenticated(self) -> bool:
        return bool(self.api_key or self.api_key_file)

    def read_api_key(self) -> str | None:
        """The API key (gRPC metadata ``authorization: Bearer …``): the environment's, else the file's."""
        if self.api_key or self.api_key_file is None:
            return self.api_key
        try:
            found = self.api_key_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise RefusedError(
                f"cannot read the Temporal API key file {self.api_key_file}: {getattr(exc, 'strerror', None) or exc}",
                "--temporal-api-key-file names a file holding the key (one line); nothing was changed",
            ) from None
        if not found:
            raise RefusedError(f"the Temporal API key file {self.api_key_file} is empty", "put the key in it")
        return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("temporal engine (default: $UPGRADER_TEMPORAL_*, else the inventory's engine:)")
    g.add_argument("--temporal-address", metavar="HOST:PORT", help="the Temporal frontend")
    g.add_argument("--temporal-namespace", metavar="NAME")
    g.add_argument("--temporal-tls-ca", type=Path, metavar="FILE", help="CA bundle (turns TLS on)")
    g.add_argument("--temporal-tls-cert", type=Path, metavar="FILE", help="client certificate (mutual TLS)")
    g.add_argument("--temporal-tls-key", type=Path, metavar="FILE")
    g.add_argument(
        "--temporal-tls-server-name",
        metavar="NAME",
        help="the name the server's certificate must carry, when it is not the address's host (turns TLS on)",
    )
    g.add_argument(
        "--temporal-api-key-file",
        type=Path,
        metavar="FILE",
        help=f"API key, sent as gRPC metadata (turns TLS on); or the key itself in ${API_KEY_ENV}",
    )


def resolve(args: argparse.Namespace, inventory: Inventory | None, inventory_path: Path | None) -> Settings:
    """The settings for a command; without an inventory (`runs --engine temporal`) flags and environment only."""
    configured = inventory.engine.temporal if inventory is not None else None
    base = inventory_path.resolve().parent if inventory_path is not None else Path.cwd()
    found: dict[str, str | None] = {}
    for name in FIELDS:
        flag = getattr(args, f"temporal_{name}", None)
        from_inventory = getattr(configured, name) if configured is not None else None
        if from_inventory is not None and name in PATHS:
            from_inventory = str(base / from_inventory)  # relative to the inventory, like its SSH keys
        found[name] = str(flag) if flag is not None else os.environ.get(ENV + name.upper()) or from_inventory
    if not found["address"]:
        raise RefusedError(
            "--engine temporal needs the server's address",
            f"pass --temporal-address HOST:PORT, set {ENV}ADDRESS, or add engine: temporal: "
            f"address: to {inventory_path or 'the inventory (and give -i)'}",
        )
    if bool(found["tls_cert"]) != bool(found["tls_key"]):
        raise RefusedError(
            "a TLS client certificate needs its key (and the key its certificate)",
            "give both --temporal-tls-cert and --temporal-tls-key, or neither",
        )
    return _settings(found)


def to_record(found: Settings) -> dict[str, str | None]:
    """For the run's journal: where its workflow lives (no secrets: TLS and key files are named, never read in;
    an API key from the environment is not recorded, and is looked up again by of_record)."""
    return {name: None if getattr(found, name) is None else str(getattr(found, name)) for name in FIELDS}


def of_record(recorded: Mapping[str, object]) -> Settings:
    """Where a recorded run's workflow lives; UPGRADER_TEMPORAL_* override (the server moved, a new CA)."""
    values = {n: os.environ.get(ENV + n.upper()) or _str(recorded.get(n)) for n in FIELDS}
    return _settings(values)


def _settings(found: dict[str, str | None]) -> Settings:
    def path(name: str) -> Path | None:
        value = found[name]
        return Path(value) if value else None

    return Settings(
        address=str(found["address"]),
        namespace=found["namespace"] or "default",
        tls_ca=path("tls_ca"),
        tls_cert=path("tls_cert"),
        tls_key=path("tls_key"),
        tls_server_name=found["tls_server_name"] or None,
        api_key_file=path("api_key_file"),
        api_key=os.environ.get(API_KEY_ENV) or None,
    )


def _str(value: object) -> str | None:
    return None if value is None else str(value)
