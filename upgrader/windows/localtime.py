"""Wall-clock rules in IANA zones: weekly maintenance windows and whole freeze days.

Everything is computed as local wall-clock times and converted to UTC per
occurrence, so "Fri 20:00 → Sun 18:00 America/New_York" ends at 22:00 UTC on
the spring-forward Sunday and at 23:00 UTC on the fall-back Sunday.  A local
time that does not exist (02:30 on a spring-forward day) is read with the
offset before the change, i.e. one hour later in real time; an ambiguous one
(01:30 on a fall-back day) is the first occurrence (``fold=0``).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from upgrader.models.playbook import MaintenanceWindow

Span = tuple[dt.datetime, dt.datetime]  # UTC [begin, end)
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
ZONE_HINT = "use an IANA name such as America/New_York"


def zone(name: str) -> ZoneInfo | None:
    """The IANA zone ``name``, or None: the one check of a zone name that inputs, overrides and schedules use.

    ZoneInfo raises ZoneInfoNotFoundError for an unknown name, ValueError for a malformed one ('../x',
    an absolute path), and OSError (IsADirectoryError) for a directory of zones such as 'America'.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def parse_weekday_time(text: str) -> tuple[int, dt.time]:
    """'Fri 20:00' → (4, 20:00); the model's pattern has already checked the form."""
    day, hhmm = text.split()
    hour, minute = hhmm.split(":")
    return DAYS.index(day), dt.time(int(hour), int(minute))


def local_to_utc(day: dt.date, at: dt.time, zone: ZoneInfo) -> dt.datetime:
    local = dt.datetime.combine(day, at, tzinfo=zone)
    return local.astimezone(dt.UTC)


def occurrences(window: MaintenanceWindow, start: dt.datetime, end: dt.datetime) -> list[Span]:
    """UTC (begin, end) of every occurrence of ``window`` overlapping [start, end)."""
    zone = ZoneInfo(window.timezone)
    start_day, start_time = parse_weekday_time(window.start)
    end_day, end_time = parse_weekday_time(window.end)
    length_days = (end_day - start_day) % 7
    if length_days == 0 and end_time <= start_time:
        length_days = 7  # "Sun 18:00 → Sun 06:00" wraps a whole week
    first = start.astimezone(zone).date() - dt.timedelta(days=8)
    last = end.astimezone(zone).date() + dt.timedelta(days=1)
    out: list[Span] = []
    day = first + dt.timedelta(days=(start_day - first.weekday()) % 7)
    while day <= last:
        begin = local_to_utc(day, start_time, zone)
        finish = local_to_utc(day + dt.timedelta(days=length_days), end_time, zone)
        if finish > start and begin < end:
            out.append((begin, finish))
        day += dt.timedelta(days=7)
    return out


def whole_day(day: dt.date, zone_name: str) -> Span:
    """UTC bounds of local midnight to the next local midnight (23 or 25 hours on DST days)."""
    zone = ZoneInfo(zone_name)
    return local_to_utc(day, dt.time(0), zone), local_to_utc(day + dt.timedelta(days=1), dt.time(0), zone)
