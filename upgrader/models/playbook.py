"""A playbook: one vendor component release and how to roll it out safely."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from upgrader import versions
from upgrader.models.types import (
    AbsPath,
    Argv,
    DateStr,
    Duration,
    Mic,
    Name,
    Pattern,
    RelPath,
    SafeText,
    Sha256,
    SpecifierStr,
    Strict,
    SystemdUnit,
    VersionStr,
)
from upgrader.versions import Scheme

# Placeholders usable inside commands; substituted per argument, never by a shell.
PLACEHOLDERS = ("release", "previous", "version", "from_version", "root", "component")
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")


def check_placeholders(argv: list[str]) -> list[str]:
    for arg in argv:
        for name in _PLACEHOLDER_RE.findall(arg):
            if name not in PLACEHOLDERS:
                raise ValueError(
                    f"unknown placeholder {{{name}}} in {arg!r} — use one of "
                    + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                )
    return argv


# Placeholders naming the release a host comes from: they have a value only while upgrading from one
# release to the next, i.e. in a migration.  Checks also run in prechecks and rollbacks, service
# commands in facts, stops and rollbacks, where there is no "previous" release.
FROM_PLACEHOLDERS = ("previous", "from_version")


def check_current_placeholders(argv: list[str]) -> list[str]:
    """Placeholders of commands that also run where only the current (or rolled-back-to) release is known."""
    check_placeholders(argv)
    for arg in argv:
        for name in _PLACEHOLDER_RE.findall(arg):
            if name in FROM_PLACEHOLDERS:
                raise ValueError(
                    f"{{{name}}} in {arg!r} has no value where this command runs: checks also run before the "
                    "upgrade and after a rollback, service commands in facts and rollbacks — use {release} "
                    "or {version} (the release that is current), or move it to a 'migrate' command"
                )
    return argv


# Argument lists that may use the placeholders above: every one in a migration ...
Command = Annotated[Argv, AfterValidator(check_placeholders)]
# ... and all but {previous} and {from_version} in checks and service commands.
CurrentCommand = Annotated[Argv, AfterValidator(check_current_placeholders)]


class Artifact(Strict):
    """Where the release tarball comes from; ``file`` is looked up in the artifact store."""

    file: RelPath | None = Field(None, description="path inside the artifact store (--artifacts DIR)")
    url: str | None = Field(
        None,
        pattern=r"^https://[^\s]+$",
        description="an https:// URL (file:// and plain http:// are refused: the tarball becomes "
        "code run as root on every host)",
    )
    sha256: Sha256
    size: int | None = Field(None, gt=0, description="bytes; checked before upload when given")
    strip_components: int = Field(0, ge=0, le=4)

    @model_validator(mode="after")
    def _one_source(self) -> Artifact:
        if (self.file is None) == (self.url is None):
            raise ValueError("give exactly one of 'file' or 'url'")
        return self


class Migration(Strict):
    """A per-release config migration; the config files are backed up first so it can be undone."""

    command: Command
    timeout: Duration = 60.0


class Hop(Strict):
    """An intermediate vendor release on a multi-hop path (4.2 → 4.3 → 4.4)."""

    version: VersionStr
    upgrade_from: SpecifierStr
    artifact: Artifact
    migrate: Migration | None = None


class Install(Strict):
    root: AbsPath = Field(description="component root; releases live in <root>/releases/<version>")
    keep_releases: int = Field(3, ge=2, le=50, description="releases kept side by side, current included")
    config_files: list[AbsPath] = Field(default_factory=list, description="backed up before a migration")
    carry_over: list[RelPath] = Field(
        default_factory=list, description="files copied from the previous release into the new one"
    )


class Service(Strict):
    systemd: SystemdUnit | None = None
    start: CurrentCommand | None = None
    stop: CurrentCommand | None = None
    status: CurrentCommand | None = None
    start_timeout: Duration = 30.0
    stop_timeout: Duration = 30.0

    @model_validator(mode="after")
    def _one_kind(self) -> Service:
        explicit = [self.start, self.stop, self.status]
        if self.systemd and any(explicit):
            raise ValueError("give either 'systemd' or 'start'/'stop'/'status', not both")
        if not self.systemd and not all(explicit):
            raise ValueError("give 'systemd: NAME.service', or all three of 'start', 'stop' and 'status'")
        return self


class CommandCheck(Strict):
    argv: CurrentCommand
    exit_code: int = 0
    stdout: Pattern | None = Field(None, description="regular expression the output must match")


class TcpCheck(Strict):
    port: int = Field(ge=1, le=65535)
    host: str = Field("127.0.0.1", pattern=r"^[A-Za-z0-9][A-Za-z0-9.:-]*$")


class HttpCheck(Strict):
    url: str = Field(pattern=r"^https?://[^\s]+$")
    status: int = Field(200, ge=100, le=599)
    body: Pattern | None = Field(None, description="regular expression the body must match")


class ProcessCheck(Strict):
    """Passes when a process of the service runs whose command line matches: only processes in the
    service's systemd control group count, and, with ``user``, only those running as that user.  A
    service without a systemd unit must give ``user`` (any local user can start a matching process)."""

    match: Pattern = Field(description="regular expression matched against full command lines")
    user: Name | None = Field(
        None, description="only processes running as this user count (required when the service has no systemd unit)"
    )


class LogCheck(Strict):
    path: AbsPath
    pattern: Pattern = Field(description="regular expression; only lines written since the restart count")


class VersionCheck(Strict):
    """The component must report the version just installed."""

    url: str | None = Field(None, pattern=r"^https?://[^\s]+$")
    field: str = Field("version", description="JSON field holding the version, when the body is JSON")
    argv: CurrentCommand | None = None
    pattern: Pattern | None = Field(
        None,
        description="regular expression that finds the version in the command's output or the HTTP body "
        "(the JSON field is not read then): its first group, or the whole match, e.g. '^v?(\\S+) '",
    )

    @model_validator(mode="after")
    def _one_source(self) -> VersionCheck:
        if (self.url is None) == (self.argv is None):
            raise ValueError("give exactly one of 'url' or 'argv'")
        return self


class TestinfraCheck(Strict):
    """A pytest-testinfra module run from the controller against the host (engine/testinfra_check.py)."""

    file: RelPath = Field(description="the module, relative to the playbook's directory, e.g. verify/ordergw.py")
    timeout: Duration = Field(60.0, description="the whole module must finish within this")


CHECK_KINDS = ("command", "tcp", "http", "process", "log", "version", "testinfra")
CONTROLLER_CHECKS = ("testinfra",)  # run by the engine on the controller, not by the agent on the host


class Check(Strict):
    name: Name
    command: CommandCheck | None = None
    tcp: TcpCheck | None = None
    http: HttpCheck | None = None
    process: ProcessCheck | None = None
    log: LogCheck | None = None
    version: VersionCheck | None = None
    testinfra: TestinfraCheck | None = None
    timeout: Duration = 5.0
    retries: int = Field(
        10,
        ge=0,
        le=1000,
        description="the check may take retries x interval to pass (http/tcp/process/log/version "
        "probes are polled every 50 ms within that window, the agent's FAST_POLL; commands every "
        "interval)",
    )
    interval: Duration = 1.0

    @model_validator(mode="after")
    def _one_kind(self) -> Check:
        kinds = [k for k in CHECK_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a check needs exactly one of: {', '.join(CHECK_KINDS)} (got {kinds or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in CHECK_KINDS if getattr(self, k) is not None)


class PreChecks(Strict):
    min_free_disk_mb: int = Field(200, ge=0, description="free space needed on the filesystem of install.root")
    healthy_before: bool = Field(True, description="run the verify checks before touching the host")
    commands: list[Check] = Field(default_factory=list)


class Canary(Strict):
    scope: Literal["datacenter", "global"] = "datacenter"
    hosts: int = Field(1, ge=0, le=1000)
    bake: Duration = 60.0
    bake_interval: Duration = 5.0
    promote: Literal["auto", "manual"] = Field(
        "auto", description="manual: after the bake the run waits for `upgrader promote RUN` (checks keep running)"
    )
    promote_timeout: Duration = Field(7200.0, description="how long a manual gate waits for a decision")
    on_timeout: Literal["rollback", "hold"] = Field(
        "rollback", description="no decision in time: roll back what this run touched, or hold for a human"
    )


Percent = Annotated[str, Field(pattern=r"^(100|[1-9][0-9]?)%$")]


class Rollout(Strict):
    batch: int | Percent = Field(1, description="hosts per wave: a number or a percentage of the datacenter")
    max_in_flight_per_datacenter: int = Field(1, ge=1, le=1000)
    datacenter_order: list[Name] = Field(default_factory=list, description="default: inventory order")
    pause_between_datacenters: Duration | Literal["manual"] = Field(
        0.0, description="a pause before each next datacenter; 'manual': wait there for `upgrader promote RUN`"
    )
    max_failures: int | Percent = Field(
        1,
        description="the run's failure budget: a number of hosts (1-10000) or a percentage of the run's hosts "
        "such as '10%'; once that many have failed, counted across all waves, no new host is started",
    )
    max_failures_per_datacenter: int | Percent | None = Field(
        None,
        description="a failure budget per datacenter: a number (1-10000) or a percentage of the run's hosts in "
        "that datacenter such as '10%'; spent in one datacenter, no new host is started anywhere",
    )

    @field_validator("batch")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("batch must be at least 1")
        return value

    @field_validator("max_failures", "max_failures_per_datacenter")
    @classmethod
    def _budget(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and not 1 <= value <= 10000:
            raise ValueError(
                f"a failure budget of {value} hosts is out of range — give 1 to 10000 hosts, or a "
                "percentage such as '10%'"
            )
        return value


class Rollback(Strict):
    on_failure: Literal["host", "wave", "run", "hold"] = Field(
        "wave",
        description="host: the failed host; wave: its wave; run: every host this run touched; hold: stop for a human",
    )


_WEEKDAY_TIME = r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([01][0-9]|2[0-3]):[0-5][0-9]$"


class MaintenanceWindow(Strict):
    start: str = Field(pattern=_WEEKDAY_TIME, description="e.g. 'Fri 20:00'")
    end: str = Field(pattern=_WEEKDAY_TIME, description="e.g. 'Sun 18:00'")
    timezone: str = Field(description="IANA zone, e.g. America/New_York")


class FreezeDate(Strict):
    date: DateStr
    reason: SafeText = ""
    timezone: str = "America/New_York"


class Windows(Strict):
    maintenance: list[MaintenanceWindow] = Field(default_factory=list, description="empty: any time")
    markets: list[Mic] = Field(default_factory=list, description="extra markets (MIC) whose hours block the run")
    respect_inventory_markets: bool = True
    market_margin: Duration = Field(1800.0, description="no upgrade this long before a market opens")
    freeze: list[FreezeDate] = Field(default_factory=list)


class Playbook(Strict):
    component: Name
    vendor: SafeText
    version_scheme: Scheme = Field(
        "pep440",
        description="how versions are read and ordered: pep440, or vendor (7.17.2-b123, 5.2.0_b123, "
        "5.2.0-hotfix1: numeric release parts, then a build/hotfix suffix that sorts after the plain release); "
        "versions are always compared as written",
    )
    version: VersionStr
    description: SafeText = ""
    artifact: Artifact
    upgrade_from: SpecifierStr = Field(description="installed versions that may upgrade directly")
    via: list[Hop] = Field(default_factory=list, description="intermediate releases for multi-hop upgrades")
    requires: dict[Name, SpecifierStr] = Field(
        default_factory=dict, description="other components on the same host and the versions needed"
    )
    install: Install
    migrate: Migration | None = Field(None, description="config migration run when switching to this release")
    service: Service
    prechecks: PreChecks = Field(default_factory=PreChecks)
    checks: list[Check] = Field(min_length=1, description="verify checks after start and during bake")
    canary: Canary = Field(default_factory=Canary)
    rollout: Rollout = Field(default_factory=Rollout)
    rollback: Rollback = Field(default_factory=Rollback)
    windows: Windows = Field(default_factory=Windows)

    # The scheme comes first in the model, so these see it (``info.data``) and report at the field's own line.
    @field_validator("version")
    @classmethod
    def _version_in_scheme(cls, value: str, info: ValidationInfo) -> str:
        versions.parse(value, info.data.get("version_scheme", "pep440"))
        return value

    @field_validator("upgrade_from")
    @classmethod
    def _spec_in_scheme(cls, value: str, info: ValidationInfo) -> str:
        versions.spec(value, info.data.get("version_scheme", "pep440"))
        return value

    @field_validator("requires")
    @classmethod
    def _requires_in_scheme(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for spec in value.values():
            versions.spec(spec, info.data.get("version_scheme", "pep440"))
        return value

    @field_validator("checks", "prechecks")
    @classmethod
    def _process_checks_scoped(cls, value: Any, info: ValidationInfo) -> Any:
        """Without a systemd unit the agent cannot tell the service's processes by control group."""
        service = info.data.get("service")
        if service is None or service.systemd:
            return value
        items = value.commands if isinstance(value, PreChecks) else value
        for check in items:
            if check.process is not None and check.process.user is None:
                raise ValueError(
                    f"process check '{check.name}' needs 'user' (the user the service runs as): the "
                    "service has no systemd unit, and any local user can start a process whose command "
                    "line matches — add user: NAME to the check, or use systemd: NAME.service"
                )
        return value

    @field_validator("via")
    @classmethod
    def _hops_in_scheme(cls, value: list[Hop], info: ValidationInfo) -> list[Hop]:
        scheme = info.data.get("version_scheme", "pep440")
        for i, hop in enumerate(value):
            try:
                versions.parse(hop.version, scheme)
                versions.spec(hop.upgrade_from, scheme)
            except ValueError as exc:
                raise ValueError(f"hop {i + 1}: {exc}") from None
        return value
