"""A run as one self-contained HTML page: summary, timeline chart, failures, rollbacks, host end states."""

from __future__ import annotations

from upgrader.escaping import html as escape  # the one HTML escaping (upgrader/escaping.py)
from upgrader.reporting.fmt import clock, command, duration, offset, stamp, title, tone
from upgrader.reporting.model import Failure, RunRecord
from upgrader.reporting.svg import timeline_svg

CSS = """
:root{--ok:#2e7d32;--warn:#ef6c00;--bad:#c62828;--neutral:#78909c;--ink:#1f2d3a;--muted:#5d6d7e;--line:#e3e8ed}
*{box-sizing:border-box}
body{margin:0;background:#eef2f5;color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"DejaVu Sans",sans-serif}
main{max-width:1180px;margin:0 auto;padding:24px}
header,section{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:20px 24px;
margin-bottom:18px}
header{border-top:6px solid var(--tone)}
.ok{--tone:var(--ok)}.warn{--tone:var(--warn)}.bad{--tone:var(--bad)}.neutral{--tone:var(--neutral)}
.kicker{color:var(--muted);text-transform:uppercase;letter-spacing:.06em;font-size:12px}
h1{margin:2px 0 6px;font-size:26px}
h2{margin:0 0 12px;font-size:18px}
h3{margin:0 0 6px;font-size:15px}
.badge{display:inline-block;padding:3px 10px;border-radius:999px;background:var(--tone);color:#fff;font-weight:600;
font-size:13px;vertical-align:middle}
.message{font-size:15px;margin:8px 0 14px}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px;margin:0}
.facts dt{color:var(--muted)}.facts dd{margin:0;word-break:break-all}
.counts{display:flex;gap:12px;margin-top:16px;flex-wrap:wrap}
.count{flex:1;min-width:120px;border:1px solid var(--line);border-radius:8px;padding:10px 14px;
border-left:5px solid var(--tone)}
.count b{display:block;font-size:26px;line-height:1.1}.count span{color:var(--muted);font-size:12px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
code,pre{font-family:"DejaVu Sans Mono",ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:#1f2d3a;color:#e8eef3;padding:10px 12px;border-radius:6px;white-space:pre-wrap;margin:8px 0 0}
td:first-child,td:nth-child(2){white-space:nowrap}
.pill{white-space:nowrap;display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;font-weight:600;
color:var(--tone);
border:1px solid var(--tone);background:#fff}
.failure{border-left:5px solid var(--bad);padding:10px 14px;margin-bottom:12px;background:#fdf3f3;border-radius:6px}
.failure .error{font-weight:600;color:#7f1d1d}
.timeline{display:block}.timeline text{font-family:system-ui,"DejaVu Sans",sans-serif}
details{border-top:1px solid var(--line);padding:6px 0}summary{cursor:pointer;font-weight:600}
.muted{color:var(--muted)}.empty{color:var(--muted);font-style:italic}
ul.events{margin:0;padding-left:18px}
footer{color:var(--muted);font-size:12px;text-align:center;margin:8px 0 24px}
"""


def to_html(record: RunRecord) -> str:
    body = [
        header(record),
        section("Timeline", timeline_svg(record)),
        failures(record),
        rollbacks(record),
        section("Where every host ended", hosts(record)),
        events(record),
        steps(record),
    ]
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title(record))} — {escape(record.status)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{''.join(b for b in body if b)}"
        f"<footer>upgrader report · run {escape(record.run_id)} · from its journal</footer>\n"
        "</main>\n</body>\n</html>\n"
    )


def section(name: str, content: str) -> str:
    return f"<section>\n<h2>{escape(name)}</h2>\n{content}\n</section>\n"


def pill(state: str) -> str:
    return f'<span class="pill {tone(state)}">{escape(state)}</span>'


def header(r: RunRecord) -> str:
    code = "" if r.exit_code is None else f" · exit {r.exit_code}"
    facts = [("operator", escape(r.operator))]
    if r.reason:
        facts.append(("reason", f"<b>{escape(r.reason)}</b>"))
    if r.break_lock:
        facts.append(("broke host locks", escape(r.break_lock)))
    facts += [
        ("started", escape(stamp(r.started))),
        ("duration", escape(duration(r.seconds))),
        ("plan", f"<code>{escape(r.plan_hash or '—')}</code>"),
        ("command", f"<code>{escape(command(r))}</code>"),
        ("run", f"<code>{escape(r.run_id)}</code>"),
    ]
    grid = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    return (
        f'<header class="{tone(r.status)}">\n<div class="kicker">{escape(r.kind)} run</div>\n'
        f'<h1>{escape(title(r))} <span class="badge">{escape(r.status)}{code}</span></h1>\n'
        f'<p class="message">{escape(r.message or "the run has no end record (still running, or killed)")}</p>\n'
        f'<dl class="facts">{grid}</dl>\n{counts(r)}\n</header>\n'
    )


def counts(r: RunRecord) -> str:
    c = r.counts()
    cards = [
        ("hosts", len(r.hosts), "neutral"),
        ("upgraded", c["upgraded"], "ok"),
        ("rolled back", c["rolled_back"], "warn" if c["rolled_back"] else "neutral"),
        ("failed", c["failed"], "bad" if c["failed"] else "neutral"),
        ("rollback failed", c["rollback_failed"], "bad" if c["rollback_failed"] else "neutral"),
    ]
    return (
        '<div class="counts">'
        + "".join(f'<div class="count {t}"><b>{n}</b><span>{name}</span></div>' for name, n, t in cards)
        + "</div>"
    )


def failures(r: RunRecord) -> str:
    if not r.failures:
        return ""
    return section(f"What failed ({len(r.failures)})", "\n".join(failure(f) for f in r.failures))


def failure(f: Failure) -> str:
    where = f" · <code>{escape(f.op)}</code>" if f.op else ""
    step = f' <span class="muted">{escape(f.step)}</span>' if f.step else ""
    rows = "".join(
        f"<tr><td><code>{escape(c.name)}</code></td><td>{c.attempts}</td><td>{escape(c.reason or '')}</td></tr>"
        for c in f.failed_checks
    )
    checks = f"<table><tr><th>failed check</th><th>attempts</th><th>output</th></tr>{rows}</table>" if rows else ""
    output = f"<pre>{escape(f.output)}</pre>" if f.output else ""
    return (
        f'<div class="failure"><h3>{escape(f.host)} — {escape(f.during)}{where}{step} '
        f'<span class="muted">at {clock(f.at)} UTC</span></h3>'
        f'<div class="error">{escape(f.error)}</div>{checks}{output}</div>'
    )


def rollbacks(r: RunRecord) -> str:
    if not r.rollbacks:
        return ""
    rows = "".join(
        f"<tr><td><b>{escape(b.host)}</b></td><td>{pill('rolled-back' if b.ok else 'rollback-failed')}</td>"
        f"<td>{escape(b.from_version or '?')} → <b>{escape(b.to_version or '?')}</b></td>"
        f"<td>{escape(', '.join(b.steps))}</td><td>{escape(b.error or '')}</td>"
        f"<td>{clock(b.at)}</td></tr>"
        for b in r.rollbacks
    )
    return section(
        f"Rollbacks ({len(r.rollbacks)})",
        "<table><tr><th>host</th><th>result</th><th>versions</th>"
        f"<th>steps</th><th>error</th><th>ended (UTC)</th></tr>{rows}</table>",
    )


def hosts(r: RunRecord) -> str:
    rows = "".join(
        f"<tr><td><b>{escape(h.host)}</b></td><td>{escape(h.datacenter or '—')}</td>"
        f"<td>{escape(h.from_version or '?')}</td><td><b>{escape(h.version or 'unknown')}</b></td>"
        f"<td>{pill(h.state)}</td><td>{escape(duration(h.seconds) if h.seconds else '—')}</td>"
        f"<td>{escape(h.detail)}</td></tr>"
        for h in r.hosts
    )
    return (
        "<table><tr><th>host</th><th>datacenter</th><th>from</th><th>ended on</th><th>state</th>"
        f"<th>time in steps</th><th>detail</th></tr>{rows}</table>"
    )


def events(r: RunRecord) -> str:
    items = [
        (
            p.start,
            f"phase {p.index + 1}: <b>{escape(p.kind)}</b> {escape(p.datacenter or 'global')} → "
            f"{escape(', '.join(p.hosts))}",
        )
        for p in r.phases
    ]
    items += [(n.at, f'<b style="color:var(--bad)">{escape(n.event)}</b>: {escape(n.text)}') for n in r.notes]
    if not items:
        return ""
    t0 = r.started or min(at for at, _ in items)
    lines = "".join(
        f"<li><code>{offset((at - t0).total_seconds())}</code> {text}</li>"
        for at, text in sorted(items, key=lambda i: i[0])
    )
    return section("Events", f'<ul class="events">{lines}</ul>')


def result(ok: bool, error: str | None) -> str:
    return "ok" if ok else f'<b style="color:var(--bad)">FAILED</b> {escape(error or "")}'


def steps(r: RunRecord) -> str:
    if not r.timeline:
        return ""
    t0 = r.started or min(s.start for s in r.timeline)
    blocks = []
    for h in r.hosts:
        segs = r.segments(h.host)
        if not segs:
            continue
        rows = "".join(
            f"<tr><td><code>{offset((s.start - t0).total_seconds())}</code></td><td>{escape(s.op)}</td>"
            f"<td><code>{escape(s.step or '')}</code></td><td>{escape(duration(s.seconds))}</td>"
            f"<td>{result(s.ok, s.error)}</td></tr>"
            for s in segs
        )
        blocks.append(
            f"<details><summary>{escape(h.host)} — {len(segs)} steps, {escape(duration(h.seconds))}"
            f"</summary><table><tr><th>start</th><th>op</th><th>step</th><th>took</th><th>result</th>"
            f"</tr>{rows}</table></details>"
        )
    return section("Steps per host", "\n".join(blocks))
