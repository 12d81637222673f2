"""An inventory: datacenters, their hosts and how to reach them over SSH."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import AfterValidator, Field

from upgrader.models.types import Duration, Mic, Name, RelOrAbsPath, SafeText, Strict, VersionStr


def _no_port(value: str) -> str:
    """':' belongs to IPv6 addresses only; 'host:2222' is a port written in the wrong place."""
    if ":" in value:
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            name, _, port = value.rpartition(":")
            raise ValueError(
                f"address {value!r} is not an IPv6 address and has a ':' in it — write the port "
                f"apart: address: {name}, port: {port}"
            ) from None
    return value


HostAddress = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$", description="IP address or DNS name"),
    AfterValidator(_no_port),
]


class Defaults(Strict):
    user: Name | None = None
    port: int = Field(22, ge=1, le=65535)
    ssh_key: RelOrAbsPath | None = None


class Jump(Strict):
    """A bastion in front of a datacenter; upgrader tunnels through it."""

    address: HostAddress
    port: int | None = Field(None, ge=1, le=65535)
    user: Name | None = None
    ssh_key: RelOrAbsPath | None = None


class Host(Strict):
    address: HostAddress
    port: int | None = Field(None, ge=1, le=65535)
    user: Name | None = None
    ssh_key: RelOrAbsPath | None = None
    roles: list[Name] = Field(default_factory=list)
    canary: bool = Field(False, description="prefer this host as a canary")
    installed: dict[Name, VersionStr] = Field(
        default_factory=dict, description="installed versions, for offline planning without facts"
    )


class Datacenter(Strict):
    timezone: str = Field("America/New_York", description="IANA zone of the site")
    markets: list[Mic] = Field(default_factory=list, description="markets traded from this datacenter")
    jump: Jump | None = None
    hosts: dict[Name, Host] = Field(min_length=1)


class Notify(Strict):
    url_env: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")] = Field(
        description="environment variable holding the webhook URL (never the URL itself)"
    )
    format: str = Field("json", pattern=r"^(json|slack)$")


class MarketHours(Strict):
    """Extended sessions that block upgrades too: pre-market before each open, post-market after each close."""

    before_open: Duration = Field(0.0, description="pre-market: this long before each regular open counts as open")
    after_close: Duration = Field(0.0, description="post-market: this long after each regular close counts as open")


class Temporal(Strict):
    """Where `--engine temporal` finds its server (flags and UPGRADER_TEMPORAL_* override each field)."""

    address: Annotated[
        str,
        Field(
            pattern=r"^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}:[0-9]{1,5}$", description="host:port of the Temporal frontend"
        ),
    ]
    namespace: Name = "default"
    tls_ca: RelOrAbsPath | None = Field(None, description="CA bundle for the server's certificate (turns TLS on)")
    tls_cert: RelOrAbsPath | None = Field(None, description="client certificate for mutual TLS")
    tls_key: RelOrAbsPath | None = Field(None, description="its private key")
    tls_server_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")] | None = Field(
        None, description="the name the server's certificate carries, when not the address's host (turns TLS on)"
    )
    api_key_file: RelOrAbsPath | None = Field(
        None, description="file holding the API key, sent as gRPC metadata (turns TLS on); never the key itself"
    )


class Engine(Strict):
    temporal: Temporal | None = None


class RedundancyGroup(Strict):
    """Hosts that stand in for each other (a primary/backup order-gateway pair, A/B feed handlers).

    Never more than ``max_unavailable`` of them are down at once — stopped, switching, starting or
    failing checks, rollbacks included: the planner splits canaries and waves, the engine waits.
    """

    hosts: list[Name] = Field(min_length=2, description="the members, by inventory host name")
    max_unavailable: int = Field(1, ge=1, le=1000, description="members that may be down at the same time")
    description: SafeText = ""


class Inventory(Strict):
    name: Name
    known_hosts: RelOrAbsPath | None = Field(None, description="known_hosts file; default ~/.ssh/known_hosts")
    description: SafeText = ""
    defaults: Defaults = Field(default_factory=Defaults)
    roles: dict[Name, list[Name]] = Field(default_factory=dict, description="role → components it runs")
    datacenters: dict[Name, Datacenter] = Field(min_length=1)
    market_hours: dict[Mic, MarketHours] = Field(
        default_factory=dict,
        description="extended sessions per market, e.g. XNAS: {before_open: 330m, after_close: 4h}",
    )
    notify: list[Notify] = Field(default_factory=list)
    groups: dict[Name, RedundancyGroup] = Field(
        default_factory=dict, description="redundancy groups: hosts never down together beyond max_unavailable"
    )
    engine: Engine = Field(default_factory=Engine, description="optional durable engine (`apply --engine temporal`)")
