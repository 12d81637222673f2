"""A run as Markdown: for a ticket, a change record or a postmortem document.

Everything in a run record came from the journal, and much of it from the hosts (errors, output,
check reasons): every value goes through upgrader.escaping, so host text shows as written and
cannot end a code block, open a comment or add a column that hides the sections after it.
"""

from __future__ import annotations

from upgrader.escaping import md_cell, md_code, md_code_block, md_inline, md_strong
from upgrader.reporting.fmt import command, duration, offset, stamp, title
from upgrader.reporting.model import Failure, RunRecord


class Cell(str):
    """A table cell this module already rendered (code spans, emphasis): not escaped again."""


def cell(value: object) -> str:
    """One table cell: a rendered ``Cell`` as it is, any other value escaped (None: a dash)."""
    if isinstance(value, Cell):
        return str(value)
    return md_cell("—" if value is None else value)


def code(value: object) -> Cell:
    return Cell(md_code(value, in_table=True))


def bold(value: object) -> Cell:
    return Cell(md_strong(value, in_table=True))


def table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(md_cell(h, "") for h in header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]


def to_markdown(record: RunRecord) -> str:
    parts = [summary(record), hosts(record), failures(record), rollbacks(record), notes(record), timeline(record)]
    return "\n\n".join(p for p in parts if p) + "\n"


def summary(r: RunRecord) -> str:
    code_ = "—" if r.exit_code is None else r.exit_code
    rows: list[list[object]] = [["run", code(r.run_id)], ["operator", r.operator]]
    if r.reason:
        rows.append(["reason", r.reason])
    if r.break_lock:
        rows.append(["broke host locks", r.break_lock])
    rows += [
        ["plan", code(r.plan_hash) if r.plan_hash else "—"],
        ["command", code(command(r))],
        ["started", stamp(r.started)],
        ["ended", stamp(r.ended)],
        ["duration", duration(r.seconds)],
        ["result", Cell(f"{bold(r.status)} (exit {code_})" + (f": {md_cell(r.message)}" if r.message else ""))],
    ]
    counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in r.counts().items() if n)
    rows.append(["hosts", f"{len(r.hosts)}" + (f" — {counts}" if counts else "")])
    return "\n".join([f"# {md_inline(title(r))} — {md_inline(r.status)}", "", *table(["", ""], rows)])


def hosts(r: RunRecord) -> str:
    rows: list[list[object]] = [
        [
            code(h.host),
            h.datacenter,
            h.from_version,
            bold(h.version or "unknown"),
            h.state,
            duration(h.seconds),
            h.detail,
        ]
        for h in r.hosts
    ]
    header = ["host", "datacenter", "from", "ended on", "state", "time in steps", "detail"]
    return "\n".join(["## Hosts", "", *table(header, rows)])


def failures(r: RunRecord) -> str:
    if not r.failures:
        return ""
    return "\n\n".join(["## What failed", *(failure(f) for f in r.failures)])


def failure(f: Failure) -> str:
    where = f" {md_code(f.op)}" + (f" ({md_code(f.step)})" if f.step else "") if f.op else ""
    lines = [f"### {md_code(f.host)} — {md_inline(f.during)}{where} at {stamp(f.at)}", "", md_inline(f.error)]
    if f.failed_checks:
        lines += [
            "",
            *table(["check", "attempts", "output"], [[code(c.name), c.attempts, c.reason] for c in f.failed_checks]),
        ]
    if f.output:
        lines += ["", md_code_block(f.output)]
    return "\n".join(lines)


def rollbacks(r: RunRecord) -> str:
    if not r.rollbacks:
        return ""
    rows: list[list[object]] = [
        [
            code(b.host),
            Cell("verified") if b.ok else bold("FAILED"),
            f"{b.from_version or '?'} → {b.to_version or '?'}",
            ", ".join(b.steps),
            b.error or "",
        ]
        for b in r.rollbacks
    ]
    return "\n".join(["## Rolled back", "", *table(["host", "result", "versions", "steps", "error"], rows)])


def notes(r: RunRecord) -> str:
    if not r.notes and not r.phases:
        return ""
    t0 = r.started
    lines = ["## Events", ""]
    items = [
        (p.start, md_inline(f"phase {p.index + 1}: {p.kind} {p.datacenter or 'global'} → {', '.join(p.hosts)}"))
        for p in r.phases
    ] + [(n.at, f"{md_strong(n.event)}: {md_inline(n.text)}") for n in r.notes]
    for at, text in sorted(items, key=lambda i: i[0]):
        lines.append(f"- `{offset((at - t0).total_seconds()) if t0 else stamp(at)}` {text}")
    return "\n".join(lines)


def timeline(r: RunRecord) -> str:
    if not r.timeline or r.started is None:
        return ""
    t0 = r.started
    out = [
        "## Timeline",
        "",
        "Offsets from the start of the run; op start times are derived from the journal "
        "(host program start + the durations of the ops before it).",
    ]
    for h in r.hosts:
        segs = r.segments(h.host)
        if not segs:
            continue
        rows: list[list[object]] = [
            [
                offset((s.start - t0).total_seconds()),
                s.category,
                s.op,
                code(s.step) if s.step else "",
                duration(s.seconds),
                "ok" if s.ok else Cell(f"**FAILED**: {md_cell(s.error or '', '')}"),
            ]
            for s in segs
        ]
        out += ["", f"### {md_code(h.host)}", "", *table(["start", "category", "op", "step", "took", "result"], rows)]
    return "\n".join(out)
