"""Unattended runs: systemd service + timer units and the equivalent cron line (pure text rendering).

A timer fires ``upgrader apply … --yes``; the window guard inside apply still
decides whether the run may start, so a badly chosen time is refused, not run.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from upgrader.errors import UpgraderError
from upgrader.loading import bounded_read
from upgrader.windows import localtime

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
UNIT_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
# OnFailure= may name a template instance with a specifier: upgrader-notify@%n.service
ON_FAILURE_RE = re.compile(r"^[A-Za-z0-9_.:][A-Za-z0-9_.:@%-]{0,199}$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")  # a POSIX login name, as useradd accepts it
_AT_RE = re.compile(r"^\s*(Mon|Tue|Wed|Thu|Fri|Sat|Sun)\s+([01]?[0-9]|2[0-3]):([0-5][0-9])\s+(\S+)\s*$")
_SAFE_ARG = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")


@dataclass(frozen=True)
class At:
    """A weekly start time in an explicit IANA zone: 'Sat 02:00 America/New_York'."""

    weekday: int  # Monday = 0
    time: dt.time
    zone: str

    def on_calendar(self) -> str:
        return f"{DAYS[self.weekday]} *-*-* {self.time:%H:%M}:00 {self.zone}"

    def cron_fields(self) -> str:
        return f"{self.time.minute} {self.time.hour} * * {(self.weekday + 1) % 7}"  # cron: Sunday = 0

    def describe(self) -> str:
        return f"{DAYS[self.weekday]} {self.time:%H:%M} {self.zone}"

    def next_elapse(self, now: dt.datetime) -> dt.datetime:
        """The first occurrence strictly after ``now`` (aware UTC), counted in local wall-clock time."""
        zone = ZoneInfo(self.zone)
        local_now = now.astimezone(zone)
        day = local_now.date() + dt.timedelta(days=(self.weekday - local_now.weekday()) % 7)
        while True:
            candidate = dt.datetime.combine(day, self.time, tzinfo=zone)
            if candidate > now:
                return candidate.astimezone(dt.UTC)
            day += dt.timedelta(days=7)


@dataclass(frozen=True)
class On:
    """One start at a local date and time in an explicit IANA zone: '2026-12-05 02:00 America/New_York'."""

    when: dt.datetime  # aware, in ``zone``
    zone: str

    def on_calendar(self) -> str:
        return f"{self.when:%Y-%m-%d %H:%M}:00 {self.zone}"

    def cron_fields(self) -> str:
        # cron has no year: this line would fire again next year; the notice in cron_line says to remove it.
        return f"{self.when.minute} {self.when.hour} {self.when.day} {self.when.month} *"

    def next_elapse(self, now: dt.datetime) -> dt.datetime | None:
        at = self.when.astimezone(dt.UTC)
        return at if at > now else None

    def describe(self) -> str:
        return f"once {self.when:%Y-%m-%d %H:%M} {self.zone}"


_ON_RE = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})\s+([01]?[0-9]|2[0-3]):([0-5][0-9])\s+(\S+)\s*$")


def parse_on(text: str) -> On:
    """A one-off start; refused when the local time does not exist (DST gap) or occurs twice (DST fold)."""
    match = _ON_RE.match(text)
    if not match:
        raise UpgraderError(
            f"--on {text!r} is not 'YYYY-MM-DD HH:MM ZONE'", "e.g. --on '2026-12-05 02:00 America/New_York'"
        )
    day, hour, minute, zone_name = match.groups()
    zone = localtime.zone(zone_name)
    if zone is None:
        raise UpgraderError(f"unknown timezone {zone_name!r} in --on", localtime.ZONE_HINT)
    try:
        date = dt.date.fromisoformat(day)
    except ValueError as exc:
        raise UpgraderError(f"--on {text!r}: {exc}", "a real date, e.g. 2026-12-05") from None
    if not bounded_read.reasonable_year(date.year):  # the timer's next elapse near year 9999 overflows
        raise UpgraderError(
            f"--on {text!r} is outside the years {bounded_read.YEARS[0]}-{bounded_read.YEARS[1]}", "pick a date to come"
        )
    naive = dt.datetime.combine(date, dt.time(int(hour), int(minute)))
    first, second = naive.replace(tzinfo=zone, fold=0), naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() != second.utcoffset():
        raise UpgraderError(
            f"--on {text!r} is ambiguous or does not exist in {zone_name} (a DST change)", "pick a time an hour away"
        )
    # A time in the spring-forward gap round-trips to another wall-clock time.
    if first.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None) != naive:
        raise UpgraderError(
            f"--on {text!r} does not exist in {zone_name} (clocks spring forward)", "pick a time an hour away"
        )
    return On(first, zone_name)


Schedule = At | On


def parse_at(text: str) -> At:
    match = _AT_RE.match(text)
    if not match:
        raise UpgraderError(f"--at {text!r} is not 'DAY HH:MM ZONE'", "e.g. --at 'Sat 02:00 America/New_York'")
    day, hour, minute, zone = match.groups()
    if localtime.zone(zone) is None:
        raise UpgraderError(f"unknown timezone {zone!r} in --at", localtime.ZONE_HINT)
    return At(DAYS.index(day), dt.time(int(hour), int(minute)), zone)


@dataclass(frozen=True)
class Job:
    """What a scheduled run executes; every path absolute."""

    name: str
    argv: tuple[str, ...]
    workdir: str
    env_file: str
    description: str
    lock_file: str  # cron only: systemd already refuses overlapping runs of one unit
    user: str | None = None  # User= of the service: the run's operator, with that user's state directory
    on_failure: str | None = None  # OnFailure= unit that notifies when the run fails or is refused
    state_dir: str | None = None  # UPGRADER_STATE_DIR for the run: the journals of ``user``

    def __post_init__(self) -> None:
        if self.user is not None and not USER_RE.match(self.user):
            raise UpgraderError(f"user {self.user!r} is not a login name", "e.g. --user deploy")
        if self.on_failure is not None and not ON_FAILURE_RE.match(self.on_failure):
            raise UpgraderError(
                f"OnFailure unit {self.on_failure!r} has characters systemd does not allow",
                "e.g. --on-failure 'upgrader-notify@%n.service'",
            )
        if not UNIT_NAME_RE.match(self.name):
            raise UpgraderError(
                f"unit name {self.name!r} has characters systemd does not allow",
                "use letters, digits, '_', '.', ':' and '-'",
            )
        for value in (*self.argv, self.workdir, self.env_file, self.description, self.lock_file, self.state_dir or ""):
            if "\n" in value or "\r" in value:
                raise UpgraderError(f"{value!r} contains a line break", "rename the file")


def service_unit(job: Job) -> str:
    return f"""\
# Generated by `upgrader schedule`; regenerate rather than edit.
[Unit]
Description={_specifiers(job.description)}
Wants=network-online.target
After=network-online.target
{f"OnFailure={job.on_failure}" + chr(10) if job.on_failure else ""}
[Service]
# oneshot: the unit is "activating" for the whole run.  systemd never runs two instances
# of one (non-template) unit, and a timer elapsing while the run is still going does not
# start another; upgrader's own host locks also refuse a second run on the same hosts.
Type=oneshot
{f"User={job.user}" + chr(10) if job.user else ""}\
{f"Environment={systemd_quote('UPGRADER_STATE_DIR=' + job.state_dir)}" + chr(10) if job.state_dir else ""}\
WorkingDirectory={_specifiers(job.workdir)}
# Secrets (the webhook URLs named by the inventory's notify url_env, ...), mode 0600.
# Not optional ('-'): a missing file fails the start visibly instead of running unannounced.
EnvironmentFile={_specifiers(job.env_file)}
ExecStart={" ".join(systemd_quote(arg) for arg in job.argv)}
# Never cut an upgrade off half-way on a start timeout; upgrader times out each step itself.
TimeoutStartSec=infinity
# `systemctl stop` signals upgrader first and gives it time to put hosts back.
KillMode=mixed
TimeoutStopSec=30min
SyslogIdentifier={job.name}
"""


def timer_unit(job: Job, at: Schedule) -> str:
    return f"""\
# Generated by `upgrader schedule`; regenerate rather than edit.
[Unit]
Description={_specifiers(job.description)} (timer: {at.describe()})

[Timer]
OnCalendar={at.on_calendar()}
# Persistent=false: a start missed while the machine was off or the timer inactive is dropped,
# not caught up at boot — a missed weekend window must not fire on Monday morning with the
# markets open (the window guard would refuse it; this keeps it from even trying).
Persistent=false
AccuracySec=1s
RandomizedDelaySec=0
{"RemainAfterElapse=no" + chr(10) if isinstance(at, On) else ""}Unit={job.name}.service

[Install]
WantedBy=timers.target
"""


def cron_line(job: Job, at: Schedule, flock: str = "/usr/bin/flock") -> str:
    """The crontab equivalent.  CRON_TZ is honoured by cronie (RHEL, Fedora); check your cron's man page."""
    command = " ".join(
        [
            "cd",
            shlex.quote(job.workdir),
            "&&",
            "set -a",
            "&&",
            ".",
            shlex.quote(job.env_file),
            "&&",
            "set +a",
            "&&",
            "exec",
            shlex.quote(flock),
            "-n",
            shlex.quote(job.lock_file),
            *(shlex.quote(a) for a in job.argv),
        ]
    )
    once = "# one-off: cron has no year, remove this entry after it has run\n" if isinstance(at, On) else ""
    return f"{once}CRON_TZ={at.zone}\n{at.cron_fields()} {command.replace('%', chr(92) + '%')}\n"


def systemd_quote(arg: str) -> str:
    """One ExecStart= argument: '%' and '$' are doubled, anything unusual double-quoted."""
    text = arg.replace("%", "%%").replace("$", "$$")
    if _SAFE_ARG.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _specifiers(value: str) -> str:
    return value.replace("%", "%%")
