"""Plans for people: plain text for terminals, Markdown for pull-request comments."""

from __future__ import annotations

from collections import Counter

from upgrader.escaping import md_cell, md_code, md_code_block, md_html, md_inline, md_strong, visible
from upgrader.models.plan import HostPlan, Phase, Plan
from upgrader.planning import budgets
from upgrader.planning.describe import Command, commands, describe

_MAX_SKIPPED_LISTED = 50


def _dc_summary(plan: Plan) -> list[tuple[str, int, int, int, int]]:
    """Per datacenter: hosts to upgrade, canaries, waves, skipped."""
    upgrade = Counter(h.datacenter for h in plan.hosts)
    canary = Counter(h.datacenter for h in plan.hosts if h.canary)
    waves = Counter(p.datacenter for p in plan.phases if p.kind == "wave")
    skipped = Counter(s.datacenter for s in plan.skipped)
    dcs = list(dict.fromkeys([*(h.datacenter for h in plan.hosts), *(s.datacenter for s in plan.skipped)]))
    return [(dc, upgrade[dc], canary[dc], waves[dc], skipped[dc]) for dc in dcs]


def _headline(plan: Plan) -> str:
    verdict = "NOT APPLICABLE" if plan.problems else ("nothing to do" if not plan.hosts else "ready")
    return (
        f"{plan.component} → {plan.target_version} ({plan.vendor}): {len(plan.hosts)} to upgrade, "
        f"{len(plan.skipped)} skipped, {len(plan.problems)} problems — {verdict}"
    )


def limit_line(plan: Plan) -> str | None:
    """What a limited plan covers, in one line (text and Markdown); None for a plan of every host."""
    if plan.limit is None:
        return None
    return (
        f"LIMITED by --limit {','.join(plan.limit.patterns)} to {len(plan.limit.hosts)} host(s): "
        "the inventory's other hosts are not in this plan"
    )


def _phase_lines(plan: Plan, index: int) -> list[str]:
    phase = plan.phases[index]
    where = phase.datacenter or "global"
    extra = f", bake {phase.bake:g}s" if phase.kind == "canary" else ""
    pause = f" (after a {phase.pause_before:g}s pause)" if phase.pause_before else ""
    line = f"{phase.index + 1:>3}. {phase.kind:<6} {where:<8} {', '.join(phase.hosts)}{extra}{pause}"
    return ([f"     ⏸ {gate_text(phase)}"] if phase.gate else []) + [line]


def gate_text(phase: Phase) -> str:
    """One line for a manual gate, as the text plan and the Markdown plan show it."""
    gate = phase.gate
    if gate is None:
        return ""
    what = "promote the canaries" if gate.kind == "promote" else f"enter {phase.datacenter}"
    watching = f"; {', '.join(gate.watch)} checked meanwhile" if gate.watch else ""
    return (
        f"gate {gate.id}: wait for `upgrader promote RUN` ({what}), at most {gate.timeout:g}s, "
        f"then {gate.on_timeout}{watching}"
    )


def _path(h: HostPlan) -> str:
    return " → ".join([h.from_version, *h.path])


def to_text(plan: Plan, *, verbose: bool = False) -> str:
    limited = limit_line(plan)
    out = [_headline(plan), *([limited] if limited else []), f"plan {plan.content_hash}", ""]
    if plan.problems:
        out.append("Problems (the plan cannot be applied):")
        out += [f"  - {p.message}" + (f" — {p.hint}" if p.hint else "") for p in plan.problems]
        out.append("")
    if plan.artifacts:
        out.append("Stage (all hosts, before anything live changes):")
        out += [f"  {a.version:<14} {a.file or a.url}  sha256:{a.sha256[:16]}…" for a in plan.artifacts]
        out.append("")
    if plan.phases:
        out.append("Phases:")
        out += [line for i in range(len(plan.phases)) for line in _phase_lines(plan, i)]
        out.append("")
        out.append(f"Rollback on failure: {plan.spec.rollback.on_failure}; {budgets.of_plan(plan).describe()}")
        if plan.groups:
            out.append("Redundancy groups (never more down at once, rollbacks included):")
            out += [f"  {g.name:<20} at most {g.max_unavailable} of {', '.join(g.hosts)}" for g in plan.groups]
        out.append("")
        out.append("Hosts:")
        for h in plan.hosts:
            tag = " [canary]" if h.canary else ""
            out.append(f"  {h.host:<20} {h.datacenter:<8} {_path(h)}{tag}")
            if verbose:
                root = plan.spec.install.root
                out += [f"      {s.id.split('/', 1)[1]:<28} {describe(s, root)[0]}" for s in h.steps]
        out.append("")
    listed = commands(plan)
    if listed:
        out.append("Commands (every one the steps run; argv exactly as the agent runs it, without a shell):")
        for c in listed:
            out += [f"  {c.what} [{', '.join(c.steps)}]", f"      {c.run}"]
        if _recorded_prechecks(plan):
            out.append(f"  {RECORDED_NOTE}")
        out.append("")
    if plan.controller_files:
        out.append("Controller files (pinned: apply refuses the plan if one changed):")
        out += [f"  {p.sha256}  {p.path}" for p in plan.controller_files]
        out.append("")
    if plan.skipped:
        out.append("Skipped:")
        reasons = Counter(s.reason for s in plan.skipped)
        if len(plan.skipped) > _MAX_SKIPPED_LISTED:
            out += [f"  {n:>5} × {reason}" for reason, n in sorted(reasons.items())]
        else:
            out += [f"  {s.host:<20} {s.reason}" for s in plan.skipped]
        out.append("")
    # One element of ``out`` is one line: a line break or terminal escape in a value shows as ⟨U+XXXX⟩,
    # so input cannot fake a line of the plan or repaint the screen.
    return "\n".join(visible(line) for line in out).rstrip() + "\n"


_FOLD_HOSTS = 12  # a phase's host list longer than this is folded in the Markdown plan
_INLINE_COMMAND = 80  # characters of a command shown in its table row; a longer one is in a <details> block


def _hosts_cell(names: list[str]) -> str:
    if len(names) <= _FOLD_HOSTS:
        return md_cell(", ".join(names))
    # Inline HTML in a cell: the text between the tags is Markdown (and the row is split at '|'), so it is
    # escaped as cell text, not as HTML (md_html is for HTML blocks, where no Markdown is read).
    return (
        f"<details><summary>{len(names)} hosts: {md_cell(', '.join(names[:3]))}, …</summary>"
        f"{md_cell(', '.join(names))}</details>"
    )


def _step_groups(plan: Plan) -> list[tuple[list[HostPlan], list[tuple[str, str, str, str]]]]:
    """Hosts whose step lists read the same (but for the host name), with that list: one table each."""
    root = plan.spec.install.root
    groups: dict[tuple[object, ...], tuple[list[HostPlan], list[tuple[str, str, str, str]]]] = {}
    for h in plan.hosts:
        rows = [(s.id.split("/", 1)[1], *describe(s, root)) for s in h.steps]
        key = (h.from_version, tuple(h.path), h.canary, tuple(rows))
        groups.setdefault(key, ([], rows))[0].append(h)
    return list(groups.values())


def to_markdown(plan: Plan, window: str | None = None) -> str:
    """For a pull-request comment (GitHub allows 65,536 characters): hosts with the same steps share one
    table, long host lists are folded, skipped hosts are counted by reason.  ``window``: the guard's
    verdict at the time of planning, when the caller has one.

    Every value from the playbook, the inventory or the hosts goes through upgrader.escaping: it shows
    as written and cannot add a column, a section or a comment.
    """
    out = [
        f"### upgrader plan: {md_code(plan.component)} → {md_code(plan.target_version)}",
        "",
        md_strong(_headline(plan)),
        "",
        f"Plan {md_code(plan.content_hash)} · playbook {md_code(plan.playbook.path)} "
        f"({md_code(plan.playbook.sha256[:12])}) · inventory {md_code(plan.inventory.path)} "
        f"({md_code(plan.inventory.sha256[:12])}) · facts {md_code(plan.facts_fingerprint[:19])}",
        "",
    ]
    limited = limit_line(plan)
    if limited:
        out += ["> [!NOTE]", f"> {md_inline(limited)}", ""]
    if window:
        out += [f"Window: {md_inline(window)}", ""]
    if plan.problems:
        out += ["> [!CAUTION]", "> The plan cannot be applied:"]
        # An empty item cannot interrupt the line above: its '-' would underline it into a heading.
        out += [
            f"> - {md_inline(p.message) or '(no message)'}" + (f" — {md_inline(p.hint)}" if p.hint else "")
            for p in plan.problems
        ]
        out.append("")
    out += ["| datacenter | upgrade | canary | waves | skipped |", "|---|---:|---:|---:|---:|"]
    out += [f"| {md_cell(dc)} | {n} | {c} | {w} | {s} |" for dc, n, c, w, s in _dc_summary(plan)]
    out.append("")
    if plan.phases:
        out += ["**Phases**", "", "| # | kind | datacenter | hosts | bake |", "|---:|---|---|---|---:|"]
        for p in plan.phases:
            where = md_cell(p.datacenter or "global")
            if p.gate:
                out.append(f"| ⏸ | **gate** | {where} | {md_cell(gate_text(p))} | |")
            out.append(
                f"| {p.index + 1} | {p.kind} | {where} | {_hosts_cell(p.hosts)} | "
                f"{f'{p.bake:g}s' if p.kind == 'canary' else ''} |"
            )
        out += [
            "",
            f"Rollback on failure: {md_strong(plan.spec.rollback.on_failure)}, "
            f"{md_inline(budgets.of_plan(plan).describe())}.",
            "",
        ]
        if plan.groups:
            out += [
                "**Redundancy groups** (never more down at once, rollbacks included)",
                "",
                "| group | at most down | members |",
                "|---|---:|---|",
            ]
            out += [f"| {md_cell(g.name)} | {g.max_unavailable} | {_hosts_cell(g.hosts)} |" for g in plan.groups]
            out.append("")
    if plan.artifacts:
        out += ["| release | artifact | sha256 |", "|---|---|---|"]
        out += [
            f"| {md_cell(a.version)} | {md_code(a.file or a.url, in_table=True)} | {md_code(a.sha256, in_table=True)} |"
            for a in plan.artifacts
        ]
        out.append("")
    out += _commands_markdown(plan)
    for hosts, rows in _step_groups(plan):
        first = hosts[0]
        who = (
            f"<code>{md_html(first.host)}</code> ({md_html(first.datacenter)})"
            if len(hosts) == 1
            else f"{len(hosts)} hosts ({md_html(', '.join(sorted({h.datacenter for h in hosts})))})"
        )
        out += [
            "<details>",
            f"<summary>{who} {md_html(_path(first))}" + (" — canary" if first.canary else "") + "</summary>",
            "",
        ]
        if len(hosts) > 1:
            out += ["Hosts: " + ", ".join(md_code(h.host) for h in hosts), ""]
        out += ["| step | does | undo | verify |", "|---|---|---|---|"]
        out += [
            f"| {md_code(step, in_table=True)} | {md_cell(does, '')} | {md_cell(undo, '')} | {md_cell(verify, '')} |"
            for step, does, undo, verify in rows
        ]
        out += ["", "</details>"]
    if plan.skipped:
        reasons = Counter(s.reason for s in plan.skipped)
        counted = "; ".join(f"{n} × {md_inline(r)}" for r, n in sorted(reasons.items()))
        out += ["", f"**{len(plan.skipped)} skipped:** {counted}"]
    return "\n".join(out).rstrip() + "\n"


# The one thing a precheck may run that the plan cannot spell out: the host's own record (agent.op_precheck).
RECORDED_NOTE = (
    "Note: the precheck's healthy_before checks run, on a host that recorded how its running release "
    "was verified (root-only /var/lib/upgrader/COMPONENT/definitions.json, written by an earlier "
    "reviewed run), with those recorded checks instead of the ones above."
)


def _recorded_prechecks(plan: Plan) -> bool:
    return any(s.op.get("op") == "precheck" and s.op.get("healthy_before") for h in plan.hosts for s in h.steps)


def _commands_markdown(plan: Plan) -> list[str]:
    """Every command the steps run, in full: short ones in the table, long ones in a folded block below it."""
    listed = commands(plan)
    out: list[str] = []
    if listed:
        out += [
            "**Commands** (every one the steps run; argv exactly as the agent runs it, without a shell)",
            "",
            "| what | steps | runs |",
            "|---|---|---|",
        ]
        long: list[tuple[int, Command]] = []
        for c in listed:
            if len(c.run) <= _INLINE_COMMAND and "\n" not in c.run:
                shown = md_code(c.run, in_table=True)
            else:
                long.append((len(long) + 1, c))
                shown = f"{len(c.run)} characters: see command {len(long)} below"
            out.append(f"| {md_cell(c.what)} | {md_cell(', '.join(c.steps))} | {shown} |")
        out.append("")
        if _recorded_prechecks(plan):
            out += [md_inline(RECORDED_NOTE), ""]
        for n, c in long:
            out += [
                "<details>",
                f"<summary>command {n}: {md_html(c.what)}</summary>",
                "",
                md_code_block(c.run, "sh"),
                "",
                "</details>",
                "",
            ]
    if plan.controller_files:
        out += [
            "**Controller files** (run on this machine; pinned: `apply` refuses the plan if one changed)",
            "",
            "| file | sha256 |",
            "|---|---|",
        ]
        out += [
            f"| {md_code(f.path, in_table=True)} | {md_code(f.sha256, in_table=True)} |" for f in plan.controller_files
        ]
        out.append("")
    return out
