"""The window guard: may a run start at ``now``, and if not, when?

Pure: every input, ``now`` included, is an argument.  Each rule (market
sessions, the margin before an open, maintenance windows, freeze days,
operator overrides) becomes a list of blocked UTC intervals; the verdict is
read from their union.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from upgrader import moments
from upgrader.errors import UpgraderError
from upgrader.models.inventory import Inventory, MarketHours
from upgrader.models.overrides import Overrides
from upgrader.models.playbook import Playbook, Windows
from upgrader.windows import localtime, markets
from upgrader.windows.verdict import Blocker, Kind, Verdict, Window, show

DEFAULT_HORIZON = dt.timedelta(days=14)


@dataclass(frozen=True)
class _Block:
    begin: dt.datetime
    end: dt.datetime
    kind: Kind
    what: str
    zone: str
    detail: str = ""
    sentence: str = ""  # replaces "<what><detail> until <end>" when given

    def blocker(self) -> Blocker:
        text = self.sentence or f"{self.what}{self.detail} until {show(self.end, self.zone)}"
        return Blocker(self.kind, self.what, self.end, self.zone, text)


def evaluate(
    playbook: Playbook,
    inventory: Inventory,
    datacenters: Iterable[str],
    now: dt.datetime,
    overrides: Overrides | None = None,
    *,
    horizon: dt.timedelta = DEFAULT_HORIZON,
) -> Verdict:
    """The guard for a run of ``playbook`` touching ``datacenters`` of ``inventory``."""
    return evaluate_windows(playbook.windows, inventory, datacenters, now, overrides, horizon=horizon)


def evaluate_windows(
    windows: Windows,
    inventory: Inventory,
    datacenters: Iterable[str],
    now: dt.datetime,
    overrides: Overrides | None = None,
    *,
    horizon: dt.timedelta = DEFAULT_HORIZON,
) -> Verdict:
    now = moments.utc(now)
    dcs = _datacenters(inventory, datacenters)
    mics = markets_for(windows, inventory, dcs)
    for mic in mics:
        markets.calendar_name(mic)  # unknown MICs fail before anything is computed
    overrides = overrides or Overrides()
    lo, hi = now - dt.timedelta(days=1), now + horizon + dt.timedelta(days=8)
    blocks = (
        _market_blocks(mics, windows.market_margin, overrides, now, lo, hi, inventory.market_hours)
        + _maintenance_blocks(windows, lo, hi)
        + _freeze_blocks(windows, overrides)
    )
    active = sorted((b for b in blocks if b.begin <= now < b.end), key=lambda b: (b.end, b.kind, b.what))
    allowed_windows = _gaps(blocks, now, now + horizon)
    closes_at = allowed_windows[0].end if not active and allowed_windows else None
    later = [w for w in allowed_windows if w.start > now]
    return Verdict(
        now=now,
        allowed=not active,
        blockers=tuple(b.blocker() for b in active),
        closes_at=closes_at,
        next_allowed=later[0].start if later else None,
        windows=tuple(allowed_windows),
        markets=tuple(mics),
        zone=_display_zone(windows, inventory, dcs),
    )


def markets_for(windows: Windows, inventory: Inventory, datacenters: Iterable[str]) -> list[str]:
    """Markets whose hours block the run, in a stable order without repeats."""
    found: list[str] = []
    if windows.respect_inventory_markets:
        for dc in datacenters:
            found += inventory.datacenters[dc].markets
    found += windows.markets
    return list(dict.fromkeys(found))


def _datacenters(inventory: Inventory, datacenters: Iterable[str]) -> list[str]:
    names = list(datacenters)
    unknown = [dc for dc in names if dc not in inventory.datacenters]
    if unknown:
        raise UpgraderError(
            f"datacenter(s) {', '.join(unknown)} not in inventory {inventory.name}",
            f"use one of {', '.join(inventory.datacenters)}",
        )
    return names


def _market_blocks(
    mics: list[str],
    margin: float,
    overrides: Overrides,
    now: dt.datetime,
    lo: dt.datetime,
    hi: dt.datetime,
    extended: Mapping[str, MarketHours],
) -> list[_Block]:
    """Each session is open from its regular open to its close, widened by the market's extended hours."""
    before = dt.timedelta(seconds=margin)
    out: list[_Block] = []
    for mic in mics:
        zone = markets.market_zone(mic, now).key
        closed = {c.date for c in overrides.closures if c.market == mic}
        hours = extended.get(mic)
        pre = dt.timedelta(seconds=hours.before_open if hours else 0)
        post = dt.timedelta(seconds=hours.after_close if hours else 0)
        for s in markets.sessions(mic, lo - post, hi + before + pre):
            if s.date in closed:
                continue
            out.append(_Block(s.open, s.close, "market", f"{mic} is open", zone))
            if pre:
                out.append(_Block(s.open - pre, s.open, "market", f"{mic} pre-market is open", zone))
            if post:
                out.append(_Block(s.close, s.close + post, "market", f"{mic} post-market is open", zone))
            first = s.open - pre
            if before:
                sentence = (
                    f"{mic} opens at {show(first, zone)}{' (pre-market)' if pre else ''}; "
                    f"no start within {_span(before)} of the open"
                )
                out.append(_Block(first - before, first, "margin", f"{mic} opens soon", zone, sentence=sentence))
    return out


def _maintenance_blocks(windows: Windows, lo: dt.datetime, hi: dt.datetime) -> list[_Block]:
    if not windows.maintenance:
        return []  # no maintenance windows: any time, subject to the other rules
    spans = sorted(span for w in windows.maintenance for span in localtime.occurrences(w, lo, hi))
    zone = windows.maintenance[0].timezone
    names = ", ".join(f"{w.start} → {w.end} {w.timezone}" for w in windows.maintenance)
    out: list[_Block] = []
    cursor = lo
    for begin, end in spans:
        if begin > cursor:
            out.append(_Block(cursor, begin, "maintenance", "outside the maintenance windows", zone, f" ({names})"))
        cursor = max(cursor, end)
    if cursor < hi:
        out.append(_Block(cursor, hi, "maintenance", "outside the maintenance windows", zone, f" ({names})"))
    return out


def _freeze_blocks(windows: Windows, overrides: Overrides) -> list[_Block]:
    out: list[_Block] = []
    for f in windows.freeze:
        day = dt.date.fromisoformat(f.date)
        begin, end = localtime.whole_day(day, f.timezone)
        out.append(_Block(begin, end, "freeze", f"freeze day {day}", f.timezone, _reason(f.reason)))
    for extra in overrides.freeze:
        begin, end = localtime.whole_day(extra.date, extra.timezone)
        out.append(
            _Block(begin, end, "override", f"operator freeze day {extra.date}", extra.timezone, _reason(extra.reason))
        )
    return out


def _gaps(blocks: list[_Block], start: dt.datetime, stop: dt.datetime) -> list[Window]:
    """Allowed windows in [start, stop): the complement of the union of ``blocks``."""
    out: list[Window] = []
    cursor = start
    for b in sorted(blocks, key=lambda b: b.begin):
        if b.end <= cursor or b.begin >= b.end:
            continue
        if b.begin > cursor:
            if cursor >= stop:
                break
            out.append(Window(cursor, b.begin))
        cursor = max(cursor, b.end)
    if cursor < stop:
        out.append(Window(cursor, None))
    return out


def _display_zone(windows: Windows, inventory: Inventory, dcs: list[str]) -> str:
    if windows.maintenance:
        return windows.maintenance[0].timezone
    if dcs:
        return inventory.datacenters[dcs[0]].timezone
    return "UTC"


def _reason(reason: str) -> str:
    return f" ({reason})" if reason else ""


def _span(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
