"""The timeline chart: hosts × time, one bar per step, as inline SVG (no script, no external resources)."""

from __future__ import annotations

from datetime import datetime

from upgrader.escaping import html as escape  # the one HTML escaping (upgrader/escaping.py)
from upgrader.reporting.fmt import duration, offset, tone
from upgrader.reporting.model import CATEGORIES, RunRecord, Segment

COLOURS = {
    "stage": "#90a4ae",
    "lock": "#cfd8dc",
    "precheck": "#9575cd",
    "stop": "#ffb74d",
    "switch": "#4fc3f7",
    "migrate": "#a1887f",
    "start": "#4db6ac",
    "verify": "#388e3c",
    "bake": "#aed581",
    "rollback": "#1e4fa0",
    "other": "#b0bec5",
}
FAILED = "#d32f2f"
TONES = {"ok": "#2e7d32", "warn": "#ef6c00", "bad": "#c62828", "neutral": "#78909c"}
WIDTH, LABEL, STATE, TOP, ROW, BAR = 1120, 130, 170, 34, 34, 22
DARK = {"verify", "rollback", "migrate", "precheck"}  # white text on these fills
STEPS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)


def timeline_svg(r: RunRecord) -> str:
    if not r.timeline:
        return '<p class="empty">No host steps were recorded in this run.</p>'
    t0, t1 = extent(r)
    scale = Scale(t0, max((t1 - t0).total_seconds(), 1.0))
    rows = [h.host for h in r.hosts if r.segments(h.host)]
    bottom = TOP + ROW * len(rows)
    legend_y = bottom + 58
    height = legend_y + 26
    parts = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="100%" role="img" aria-label="timeline of run {escape(r.run_id)}">',
        *phase_bands(r, scale, bottom),
        *grid(scale, bottom),
    ]
    for i, host in enumerate(rows):
        parts += row(r, host, TOP + i * ROW, i, scale)
    parts += markers(r, scale, bottom)
    parts += legend(r, legend_y)
    parts.append("</svg>")
    return "\n".join(parts)


def extent(r: RunRecord) -> tuple[datetime, datetime]:
    starts = [s.start for s in r.timeline] + ([r.started] if r.started else [])
    ends = [s.end for s in r.timeline] + ([r.ended] if r.ended else [])
    return min(starts), max(ends)


class Scale:
    def __init__(self, t0: datetime, span: float) -> None:
        self.t0, self.span = t0, span
        self.x0, self.width = LABEL + 10, WIDTH - LABEL - STATE - 20

    def x(self, at: datetime) -> float:
        return self.at((at - self.t0).total_seconds())

    def at(self, seconds: float) -> float:
        return round(self.x0 + self.width * seconds / self.span, 1)


def row(r: RunRecord, host: str, y: int, index: int, scale: Scale) -> list[str]:
    state = next(h for h in r.hosts if h.host == host)
    out = []
    if index % 2:
        out.append(f'<rect x="0" y="{y}" width="{WIDTH}" height="{ROW}" fill="#f5f7f9"/>')
    mid = y + ROW / 2
    dc = f'<tspan fill="#78909c" font-size="11"> {escape(state.datacenter)}</tspan>' if state.datacenter else ""
    out.append(f'<text x="8" y="{mid + 4}" font-size="13" font-weight="600">{escape(host)}{dc}</text>')
    out += [bar(s, y + (ROW - BAR) / 2, scale) for s in r.segments(host)]
    colour = TONES[tone(state.state)]
    label = f"{state.version or 'unknown'} · {state.state}"
    x = WIDTH - STATE + 6
    out.append(
        f'<rect x="{x}" y="{y + 5}" width="{STATE - 14}" height="{ROW - 10}" rx="10" fill="{colour}" '
        f'fill-opacity="0.12" stroke="{colour}"/>'
    )
    out.append(
        f'<text x="{x + (STATE - 14) / 2}" y="{mid + 4}" font-size="12" text-anchor="middle" '
        f'fill="{colour}" font-weight="600">{escape(label)}</text>'
    )
    return out


def bar(s: Segment, y: float, scale: Scale) -> str:
    x = scale.x(s.start)
    w = max(scale.at(s.seconds) - scale.x0, 2.5)
    fill = COLOURS.get(s.category, COLOURS["other"]) if s.ok else FAILED
    extra = ' fill-opacity="0.55"' if s.category == "stage" and s.ok else ""
    stroke = ' stroke="#7f0000" stroke-width="1.5"' if not s.ok else ' stroke="#ffffff" stroke-width="0.6"'
    tip = (
        f"{s.host} · {s.op}"
        + (f" ({s.step})" if s.step else "")
        + f" · {offset((s.start - scale.t0).total_seconds())} · {duration(s.seconds)} · "
        + ("ok" if s.ok else f"FAILED: {s.error or ''}")
    )
    out = (
        f'<g><title>{escape(tip)}</title><rect x="{x}" y="{y}" width="{round(w, 1)}" height="{BAR}" rx="2" '
        f'fill="{fill}"{extra}{stroke}/>'
    )
    text = f"{s.op} {duration(s.seconds)}" if w > 9 * (len(s.op) + 6) else s.op if w > 8 * len(s.op) + 8 else ""
    if text:
        ink = "#ffffff" if not s.ok or s.category in DARK else "#1f2d3a"
        out += (
            f'<text x="{round(x + w / 2, 1)}" y="{y + BAR / 2 + 4}" font-size="11" text-anchor="middle" '
            f'fill="{ink}">{escape(text)}</text>'
        )
    return out + "</g>"


def phase_bands(r: RunRecord, scale: Scale, bottom: int) -> list[str]:
    out = []
    for p in r.phases:
        x0 = scale.x(p.start)
        x1 = scale.x(p.end) if p.end else scale.x0 + scale.width
        fill = "#fff8e1" if p.kind == "canary" else "#e8f1fb"
        out.append(
            f'<rect x="{x0}" y="{TOP - 20}" width="{max(x1 - x0, 1)}" height="{bottom - TOP + 20}" '
            f'fill="{fill}" fill-opacity="0.8"/>'
        )
        label = f"{p.index + 1} {p.kind} {p.datacenter or ''}".strip()
        shown = label if (x1 - x0) > 6.5 * len(label) + 6 else str(p.index + 1)
        out.append(
            f'<text x="{x0 + 3}" y="{TOP - 7}" font-size="11" fill="#5d6d7e">{escape(shown)}'
            f"<title>phase {escape(label)}: {escape(', '.join(p.hosts))}</title></text>"
        )
    return out


def grid(scale: Scale, bottom: int) -> list[str]:
    step = next((s for s in STEPS if scale.span / s <= 10), STEPS[-1])
    out = [f'<line x1="{scale.x0}" y1="{bottom}" x2="{scale.x0 + scale.width}" y2="{bottom}" stroke="#90a4ae"/>']
    tick = 0.0
    while tick <= scale.span + 1e-9:
        x = scale.at(tick)
        out.append(
            f'<line x1="{x}" y1="{TOP - 20}" x2="{x}" y2="{bottom + 4}" stroke="#dde3e8" stroke-dasharray="2 3"/>'
        )
        label = offset(tick).removesuffix(".0") if step >= 1 else offset(tick)
        out.append(f'<text x="{x}" y="{bottom + 18}" font-size="11" text-anchor="middle" fill="#5d6d7e">{label}</text>')
        tick += step
    out.append(
        f'<text x="{scale.x0 + scale.width}" y="{bottom + 34}" font-size="11" text-anchor="end" '
        f'fill="#90a4ae">time since the run started (m:ss)</text>'
    )
    return out


def markers(r: RunRecord, scale: Scale, bottom: int) -> list[str]:
    out = []
    for n in r.notes:
        if n.event not in ("halt", "hold", "lock-break", "recover", "resume"):
            continue
        x = scale.x(n.at)
        out.append(
            f'<line x1="{x}" y1="{TOP - 20}" x2="{x}" y2="{bottom}" stroke="{FAILED}" stroke-width="1.5" '
            f'stroke-dasharray="5 3"><title>{escape(n.event)}: {escape(n.text)}</title></line>'
        )
    return out


def legend(r: RunRecord, y: int) -> list[str]:
    used = {s.category for s in r.timeline}
    items = [(c, COLOURS[c]) for c in CATEGORIES if c in used]
    if any(not s.ok for s in r.timeline):
        items.append(("failed", FAILED))
    out: list[str] = []
    x: float = LABEL + 10
    for name, colour in items:
        out.append(f'<rect x="{x}" y="{y - 10}" width="14" height="12" rx="2" fill="{colour}"/>')
        out.append(f'<text x="{x + 19}" y="{y}" font-size="12" fill="#37474f">{name}</text>')
        x += 28 + 7.5 * len(name)
    return out
