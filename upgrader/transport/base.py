"""Transport interface: keep an argv running as a stream, put a file.  Results are values.

Only ``upgrader.transport.fabric_adapter`` (with ``ssh`` and ``gateways``) knows about Fabric and Paramiko;
everything else sees ``Transport`` and ``Result``.  A fake implementation of
this interface is fine for unit tests of control flow, never the only test.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Timeouts:
    """Every network operation has one: a cut-off host must surface, not hang."""

    connect: float = 5.0  # TCP connect and SSH banner
    auth: float = 10.0
    channel: float = 10.0  # opening a session channel on an established connection
    command: float = 120.0  # default for a command; callers pass their own
    transfer: float = 120.0  # one file upload or download
    attempts: int = 2  # connection attempts for idempotent operations

    @property
    def handshake(self) -> float:
        """The most one connection may take to be usable: TCP connect and banner (to the host, and to its
        jump host first), authentication, and a session channel.  Every budget of a call starts with it."""
        return self.connect * 2 + self.auth + self.channel

    @classmethod
    def for_options(cls, connect: float, command: float | None) -> Timeouts:
        """From the commands' --connect-timeout and --command-timeout."""
        return cls(connect=connect, channel=max(5.0, connect * 2), command=command or cls.command)


DEFAULTS = Timeouts()  # the one set of connection defaults: the commands' options and early start read it
PYTHON = "python3"  # the hosts' interpreter that runs the agent, unless --python names another


@dataclass(frozen=True)
class Endpoint:
    """How to reach one host; ``jump`` is the datacenter's bastion, if any."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    ssh_key: str | None = None
    known_hosts: str | None = None
    jump: Endpoint | None = None
    strict_host_keys: bool = True


@dataclass(frozen=True)
class Result:
    """What a command did: its argv, exit code, output and duration."""

    host: str
    argv: tuple[str, ...]
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    def __str__(self) -> str:
        what = "timed out" if self.timed_out else f"exit {self.exit_code}"
        return f"{self.host}: `{self.command[:120]}` {what}"


class Stream(Protocol):
    """A long-lived command on a host that answers one request line at a time (the agent serving)."""

    @property
    def alive(self) -> bool: ...

    def exchange(self, line: str | None, *, until: str, timeout: float) -> Result:
        """Send ``line`` (None: send nothing, just read), then read stdout up to and including the
        first line starting with ``until``.  A timeout or an early exit is a Result, not an exception;
        a lost connection raises TransportError."""
        ...

    def close(self) -> None: ...


class Transport(Protocol):
    """One host's connection, reused for every call within a run: what the engine needs of a host, and no more.

    The engine talks to a host's agent over one long-lived stream and uploads artifacts; nothing else.
    Constructing a transport does no I/O: the first call connects.
    """

    endpoint: Endpoint
    timeouts: Timeouts

    def stream(self, argv: Sequence[str], *, sudo: bool = False) -> Stream:
        """Start argv (quoted once here) and keep it running, talking over its stdin and stdout (see Stream);
        raises TransportError if the host cannot be reached in time."""
        ...

    def put(self, local: Path, remote: str, *, timeout: float | None = None) -> None: ...

    def close(self) -> None: ...
