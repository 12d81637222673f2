"""A run as Markdown: for a ticket, a change record or a postmortem document."""

from __future__ import annotations

from upgrader.reporting.fmt import command, duration, offset, stamp, title
from upgrader.reporting.model import Failure, RunRecord


def cell(text: object) -> str:
    return str(text if text is not None else "—").replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]


def to_markdown(record: RunRecord) -> str:
    parts = [summary(record), hosts(record), failures(record), rollbacks(record), notes(record), timeline(record)]
    return "\n\n".join(p for p in parts if p) + "\n"


def summary(r: RunRecord) -> str:
    code = "—" if r.exit_code is None else r.exit_code
    rows: list[list[object]] = [["run", f"`{r.run_id}`"], ["operator", r.operator]]
    if r.reason:
        rows.append(["reason", r.reason])
    if r.break_lock:
        rows.append(["broke host locks", r.break_lock])
    rows += [["plan", f"`{r.plan_hash}`" if r.plan_hash else "—"], ["command", f"`{command(r)}`"],
             ["started", stamp(r.started)], ["ended", stamp(r.ended)], ["duration", duration(r.seconds)],
             ["result", f"**{r.status}** (exit {code}){': ' + r.message if r.message else ''}"]]
    counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in r.counts().items() if n)
    rows.append(["hosts", f"{len(r.hosts)}" + (f" — {counts}" if counts else "")])
    return "\n".join([f"# {title(r)} — {r.status}", "", *table(["", ""], rows)])


def hosts(r: RunRecord) -> str:
    rows: list[list[object]] = [[f"`{h.host}`", h.datacenter, h.from_version, f"**{h.version or 'unknown'}**",
                                 h.state, duration(h.seconds), h.detail] for h in r.hosts]
    header = ["host", "datacenter", "from", "ended on", "state", "time in steps", "detail"]
    return "\n".join(["## Hosts", "", *table(header, rows)])


def failures(r: RunRecord) -> str:
    if not r.failures:
        return ""
    return "\n\n".join(["## What failed", *(failure(f) for f in r.failures)])


def failure(f: Failure) -> str:
    where = f" `{f.op}`" + (f" (`{f.step}`)" if f.step else "") if f.op else ""
    lines = [f"### `{f.host}` — {f.during}{where} at {stamp(f.at)}", "", f.error]
    if f.failed_checks:
        lines += ["", *table(["check", "attempts", "output"],
                             [[f"`{c.name}`", c.attempts, c.reason] for c in f.failed_checks])]
    if f.output:
        lines += ["", "```text", f.output, "```"]
    return "\n".join(lines)


def rollbacks(r: RunRecord) -> str:
    if not r.rollbacks:
        return ""
    rows: list[list[object]] = [[f"`{b.host}`", "verified" if b.ok else "**FAILED**",
                                 f"{b.from_version or '?'} → {b.to_version or '?'}", ", ".join(b.steps),
                                 b.error or ""] for b in r.rollbacks]
    return "\n".join(["## Rolled back", "", *table(["host", "result", "versions", "steps", "error"], rows)])


def notes(r: RunRecord) -> str:
    if not r.notes and not r.phases:
        return ""
    t0 = r.started
    lines = ["## Events", ""]
    items = [(p.start, f"phase {p.index + 1}: {p.kind} {p.datacenter or 'global'} → {', '.join(p.hosts)}")
             for p in r.phases] + [(n.at, f"**{n.event}**: {n.text}") for n in r.notes]
    for at, text in sorted(items, key=lambda i: i[0]):
        lines.append(f"- `{offset((at - t0).total_seconds()) if t0 else stamp(at)}` {text}")
    return "\n".join(lines)


def timeline(r: RunRecord) -> str:
    if not r.timeline or r.started is None:
        return ""
    t0 = r.started
    out = ["## Timeline", "", "Offsets from the start of the run; op start times are derived from the journal "
           "(host program start + the durations of the ops before it)."]
    for h in r.hosts:
        segs = r.segments(h.host)
        if not segs:
            continue
        rows: list[list[object]] = [[offset((s.start - t0).total_seconds()), s.category, s.op,
                                     f"`{s.step}`" if s.step else "", duration(s.seconds),
                                     "ok" if s.ok else f"**FAILED**: {s.error or ''}"] for s in segs]
        out += ["", f"### `{h.host}`", "", *table(["start", "category", "op", "step", "took", "result"], rows)]
    return "\n".join(out)
