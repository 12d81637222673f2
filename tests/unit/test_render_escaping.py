"""Rendering treats every input string as data (issue 25 §2).

Random strings — backticks, pipes, fences, HTML, comments, newlines, any Unicode — in every free-text
field of the playbook, the inventory and the hosts' results never change the structure of what is
rendered.  The output is parsed with markdown-it-py (CommonMark with GFM tables) and html.parser:

- the plan's Markdown keeps exactly its tables, with their headers, row counts and, in each row, the
  sha256 and the value as written; no HTML but the renderer's own tags, no link, no heading of the
  input's making; every long command in a fenced block holding exactly the command;
- the diff's Markdown keeps one list item per difference;
- the run report's Markdown and HTML keep the structure they have when every string is replaced by
  a harmless one of the same length: the same sections (headings), tables, columns and rows.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.token import Token

from tests.unit.conftest import INVENTORY, REPO, plan_files
from upgrader.escaping import md_cell, md_code, md_code_block, md_inline, md_strong, one_line, visible
from upgrader.models.inventory import Inventory
from upgrader.models.plan import ControllerFile, Limit, Plan, PlanProblem
from upgrader.models.playbook import Artifact, Check, CommandCheck, Migration, Service
from upgrader.planning.describe import commands
from upgrader.planning.diff import diff
from upgrader.planning.planner import facts_from_inventory, make_plan
from upgrader.planning.render import _INLINE_COMMAND, to_markdown
from upgrader.reporting import html as report_html
from upgrader.reporting import markdown as report_markdown
from upgrader.reporting.model import Check as RunCheck
from upgrader.reporting.model import Failure, HostState, Note, PhaseSpan, Rollback, RunRecord, Segment

PARSER = MarkdownIt("commonmark").enable("table")
ATTACKS = [
    "`",
    "``",
    "```",
    "~~~",
    "|",
    "\\|",
    "\\",
    "<!--",
    "-->",
    "</details>",
    "<details>",
    "<script>x</script>",
    "\n",
    "\r\n",
    "\n\n# heading\n",
    "\n---\n",
    "- item",
    "1. item",
    "> quote",
    "    indented",
    "&lt;",
    "&#96;",
    "[x](https://evil)",
    "![i](x)",
    "*",
    "_",
    "$x$",
    "\u202e",
    "\u2066",
    "\u0085",
    "\u2028",
    "\x00",
    "\x1b[31m",
    "\t",
    " ",
    "ǅ",
    "😀",
    "\ufeff",
    "{",
    "}",
]
TEXT = st.lists(st.one_of(st.sampled_from(ATTACKS), st.text(max_size=6)), max_size=6).map("".join)
SHA = "sha256:" + "ab" * 32


def render_text(children: list[Token] | None) -> str:
    """An inline token's text as a reader sees it: text, code and entities decoded, markup dropped."""
    return "".join(c.content for c in children or [] if c.type in ("text", "code_inline", "text_special"))


def tables(tokens: list[Token]) -> list[tuple[list[str], list[list[str]]]]:
    """Each table: its header cells' text and its body rows' cells' text."""
    out: list[tuple[list[str], list[list[str]]]] = []
    row: list[str] | None = None
    in_head = False
    for i, t in enumerate(tokens):
        if t.type == "table_open":
            out.append(([], []))
        elif t.type == "thead_open":
            in_head = True
        elif t.type == "thead_close":
            in_head = False
        elif t.type == "tr_open":
            row = out[-1][0] if in_head else []
            if not in_head:
                out[-1][1].append(row)
        elif t.type in ("th_open", "td_open") and row is not None:
            row.append(render_text(tokens[i + 1].children).strip())
    return out


def shown(text: str) -> str:
    """What a cell shows for ``text``: one line, tabs as spaces, invisible characters made visible (edges trimmed)."""
    return visible(one_line(text).replace("\t", " ")).strip()


shown_inline = shown


@functools.cache
def base_plan() -> Plan:
    return plan_files(REPO / "playbooks" / "ordergw-5.2.0.yml", INVENTORY)


@functools.cache
def base_inventory() -> Inventory:
    from upgrader.loading.inputs import load_inventory

    return load_inventory(INVENTORY).model


def hostile_plan(s: list[str]) -> Plan:
    """The repo's ordergw plan with hostile strings in every free-text field that reaches the Markdown."""
    base = base_plan()
    spec = base.spec
    argv = [x.replace("{", "(") for x in s[3:7]]  # '{name}' is a placeholder: validation's business, not ours
    checks = [
        Check.model_construct(
            name=s[2] or "x",
            command=CommandCheck.model_construct(argv=argv or ["x"], exit_code=0, stdout=s[7] or None),
            timeout=5.0,
            retries=1,
            interval=1.0,
        ),
        *spec.checks,
    ]
    svc = Service.model_construct(
        systemd=None,
        start=[argv[0] or "x", s[8]],
        stop=[s[9].replace("{", "(") or "x"],
        status=["/bin/true", s[10].replace("{", "(")],
        start_timeout=30.0,
        stop_timeout=30.0,
    )
    hostile_spec = spec.model_copy(
        update={
            "vendor": s[0],
            "checks": checks,
            "service": svc,
            "artifact": Artifact.model_construct(
                file=None, url="https://" + s[1], sha256=SHA, size=None, strip_components=0
            ),
            "migrate": Migration.model_construct(
                command=[s[11].replace("{", "(") or "x", "--from", "{previous}"], timeout=60.0
            ),
        }
    )
    inventory = _hostile_inventory(s)
    plan = make_plan(
        hostile_spec,
        inventory,
        facts_from_inventory(inventory),
        playbook_ref=base.playbook.model_copy(update={"path": s[12]}),
        inventory_ref=base.inventory.model_copy(update={"path": s[13]}),
        controller_files=[ControllerFile(path=s[14], sha256=SHA, used_by=s[15])],
    )
    return plan.model_copy(
        update={
            "problems": [PlanProblem(host=None, message=s[16], hint=s[17])],
            "limit": Limit(patterns=[s[18] or "x"], hosts=[h.host for h in plan.hosts]),
        }
    ).sealed()


def _hostile_inventory(s: list[str]) -> Inventory:
    """The test inventory with the first upgraded host and its datacenter renamed to hostile strings."""
    inv = base_inventory()
    first = base_plan().hosts[0]
    dc = inv.datacenters[first.datacenter]
    hosts = {
        ((s[19] or "h").replace("/", "∕") if name == first.host else name): host for name, host in dc.hosts.items()
    }
    renamed = {
        ((s[20] or "d") if name == first.datacenter else name): (
            dc.model_copy(update={"hosts": hosts}) if name == first.datacenter else other
        )
        for name, other in inv.datacenters.items()
    }
    return inv.model_copy(update={"datacenters": renamed})


PLAN_TABLES = {
    "dc": ["datacenter", "upgrade", "canary", "waves", "skipped"],
    "phases": ["#", "kind", "datacenter", "hosts", "bake"],
    "artifacts": ["release", "artifact", "sha256"],
    "commands": ["what", "steps", "runs"],
    "files": ["file", "sha256"],
    "steps": ["step", "does", "undo", "verify"],
}


def check_plan_markdown(plan: Plan, markdown: str) -> None:
    tokens = PARSER.parse(markdown)
    flat = [c for t in tokens for c in ([t, *(t.children or [])])]
    assert [t.tag for t in tokens if t.type == "heading_open"] == ["h3"]
    assert not [t for t in flat if t.type in ("link_open", "image")]
    for t in flat:  # the renderer's own tags only: no comment, script or tag from the input
        if t.type in ("html_inline", "html_block"):
            assert "<" not in re.sub(r"</?(details|summary|code)>", "", t.content), t.content
    found = tables(tokens)
    listed = commands(plan)
    expected = [
        PLAN_TABLES["dc"],
        PLAN_TABLES["phases"],
        PLAN_TABLES["artifacts"],
        PLAN_TABLES["commands"],
        PLAN_TABLES["files"],
    ]
    assert [h for h, _ in found[:5]] == expected
    assert all(h == PLAN_TABLES["steps"] for h, _ in found[5:]) and len(found) > 5
    for header, rows in found:
        assert all(len(r) == len(header) for r in rows)
    artifacts, cmds, files = found[2][1], found[3][1], found[4][1]
    assert [(r[0], r[1], r[2]) for r in artifacts] == [
        (a.version, shown(a.file or a.url or ""), a.sha256) for a in plan.artifacts
    ]
    assert plan.artifacts[-1].sha256 == SHA
    assert [r[0] for r in cmds] == [shown_inline(c.what) for c in listed]
    long = [c for c in listed if len(c.run) > _INLINE_COMMAND or "\n" in c.run]
    assert [r[2] for r in cmds if not r[2].endswith("below")] == [shown(c.run) for c in listed if c not in long]
    fences = [t.content for t in tokens if t.type == "fence"]
    assert fences == [
        visible(c.run.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    "), keep="\n").rstrip("\n") + "\n"
        for c in long
    ]
    assert files == [[shown(f.path), f.sha256] for f in plan.controller_files]
    steps = [r[0] for _, rows in found[5:] for r in rows]
    assert steps and all(not s.startswith("|") for s in steps)
    paragraphs = [render_text(t.children) for t in tokens if t.type == "inline"]
    assert shown_inline(plan.problems[0].message) in "\n".join(paragraphs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TEXT, min_size=21, max_size=21))
def test_no_input_string_bends_the_plan_markdown(strings: list[str]) -> None:
    plan = hostile_plan(strings)
    check_plan_markdown(plan, to_markdown(plan, window=strings[0]))


@settings(max_examples=40, deadline=None)
@given(st.lists(TEXT, min_size=21, max_size=21), st.lists(TEXT, min_size=21, max_size=21))
def test_no_input_string_bends_the_diff_markdown(old: list[str], new: list[str]) -> None:
    from upgrader.commands.diff import run as diff_command  # noqa: F401  (the Markdown is built as it builds it)

    a, b = hostile_plan(old), hostile_plan(new)
    lines = diff(a, b)
    markdown = "\n".join(f"- {md_inline(line)}" for line in lines)
    tokens = PARSER.parse(markdown)
    assert [t.type for t in tokens if t.type.endswith("_open") and t.level == 0] == (
        ["bullet_list_open"] if lines else []
    )
    items = [render_text(t.children) for t in tokens if t.type == "inline"]
    assert items == [shown_inline(line) for line in lines]


# -- the attacks of the review, each by example (the property above covers them too) ---------------------------


@pytest.mark.reliability("a backtick and a '|' in an artifact URL", "the sha256 column shows the artifact's sha256")
def test_an_artifact_url_cannot_add_a_column(record_property: Callable[[str, object], None]) -> None:
    url = "x` | `sha256:" + "0" * 64 + "` | `"
    plan = hostile_plan(["Acme", url, *["x"] * 19])
    found = tables(PARSER.parse(to_markdown(plan)))
    artifacts = next(rows for header, rows in found if header == PLAN_TABLES["artifacts"])
    assert artifacts[-1] == [plan.target_version, "https://" + url, SHA]
    record_property(
        "observed",
        f"artifact row parsed as {len(artifacts[-1])} cells; sha256 cell "
        f"{artifacts[-1][2][:20]}…; url cell {artifacts[-1][1][:40]!r}",
    )


@pytest.mark.reliability("raw HTML in the playbook's vendor", "shown as text in the headline; no HTML reaches it")
def test_vendor_html_does_not_reach_the_headline(record_property: Callable[[str, object], None]) -> None:
    vendor = "<img src=x onerror=alert(1)><!-- hidden"
    plan = hostile_plan([vendor, *["x"] * 20])
    tokens = PARSER.parse(to_markdown(plan))
    headline = next(t for t in tokens if t.type == "inline" and "to upgrade" in t.content)
    kinds = {c.type for c in headline.children or []}
    assert "html_inline" not in kinds and vendor in render_text(headline.children)
    record_property(
        "observed", f"headline tokens {sorted(kinds)}; vendor shown as text: {vendor in render_text(headline.children)}"
    )


def record(s: list[str]) -> RunRecord:
    """A failed, rolled-back run whose every free-text field is from ``s`` (host output, errors, names)."""
    t0 = dt.datetime(2026, 12, 4, 22, tzinfo=dt.UTC)
    at = t0 + dt.timedelta(seconds=5)
    host, dc = s[0] or "h", s[1]
    return RunRecord(
        run_id=s[2],
        kind="apply",
        component=s[3],
        version=s[4],
        operator=s[5],
        reason=s[6],
        argv=(s[7], s[8]),
        plan_hash=s[9],
        break_lock=s[10],
        started=t0,
        ended=t0 + dt.timedelta(seconds=60),
        status=s[11],
        exit_code=3,
        message=s[12],
        hosts=(HostState(host, dc, s[13], s[14], s[15], s[16], 12.0),),
        timeline=(Segment(host, "verify", s[17], s[18], at, 1.5, False, s[19]),),
        phases=(PhaseSpan(0, s[20], dc, (host,), t0, at),),
        failures=(Failure(host, at, s[21], s[22], s[23], s[24], (RunCheck(s[25], False, s[26], 3),), s[27]),),
        rollbacks=(Rollback(host, at, True, s[28], s[29], (s[30],), s[31]),),
        notes=(Note(at, s[32], s[33]),),
    )


def harmless(s: list[str]) -> list[str]:
    """Each string as letters of the same length, its blanks kept (a blank value renders as a dash)."""
    return ["".join(" " if one_line(c).replace("\t", " ") == " " else "x" for c in v) for v in s]


def skeleton(markdown: str) -> list[tuple[str, str, int]]:
    """The document's structure without its words: every block and inline token's type, tag and nesting."""
    out: list[tuple[str, str, int]] = []
    for t in PARSER.parse(markdown):
        out.append((t.type, t.tag, t.nesting))
        out += [(c.type, c.tag, c.nesting) for c in t.children or [] if c.type not in ("text", "text_special")]
    return out


@settings(max_examples=80, deadline=None)
@given(st.lists(TEXT, min_size=34, max_size=34))
def test_no_host_or_journal_string_bends_the_report_markdown(strings: list[str]) -> None:
    markdown = report_markdown.to_markdown(record(strings))
    assert skeleton(markdown) == skeleton(report_markdown.to_markdown(record(harmless(strings))))
    tokens = PARSER.parse(markdown)
    headings = [
        render_text(tokens[i + 1].children) for i, t in enumerate(tokens) if t.type == "heading_open" and t.tag == "h2"
    ]
    assert headings == ["Hosts", "What failed", "Rolled back", "Events", "Timeline"]
    assert not [t for t in tokens if t.type in ("html_block", "html_inline")]
    fences = [t.content for t in tokens if t.type == "fence"]
    output = strings[27].replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    assert fences == ([visible(output, keep="\n").rstrip("\n") + "\n"] if strings[27] else [])
    found = tables(tokens)
    assert found[1][1][0][6] == (shown_inline(strings[15]) or "—")  # the host's detail, as written


@pytest.mark.reliability(
    "host output with a code fence and '<!--' in the postmortem Markdown",
    "'Rolled back' and 'Timeline' sections still render; the output stays in its code block",
)
def test_host_output_cannot_hide_the_postmortem_sections(record_property: Callable[[str, object], None]) -> None:
    strings = ["x"] * 34
    strings[27] = "ok\n```\n<!-- the rest of the report is a comment\n````\n"
    strings[24] = "error <!-- also"
    tokens = PARSER.parse(report_markdown.to_markdown(record(strings)))
    headings = [render_text(tokens[i + 1].children) for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert "Rolled back" in headings and "Timeline" in headings
    fence = next(t for t in tokens if t.type == "fence")
    assert fence.content == strings[27] and fence.markup == "`````"
    record_property(
        "observed",
        f"headings {headings[1:]}; output fence {fence.markup!r} holds the output intact; "
        f"{sum(t.type.startswith('html') for t in tokens)} HTML token(s)",
    )


class _Structure(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.comments = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag + "".join(sorted(f" {k}" for k, _ in attrs)))

    def handle_endtag(self, tag: str) -> None:
        self.tags.append("/" + tag)

    def handle_comment(self, data: str) -> None:
        self.comments += 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def structure(page: str) -> _Structure:
    parser = _Structure()
    parser.feed(page)
    parser.close()
    return parser


@settings(max_examples=60, deadline=None)
@given(st.lists(TEXT, min_size=34, max_size=34))
def test_no_host_or_journal_string_bends_the_html_report(strings: list[str]) -> None:
    page = structure(report_html.to_html(record(strings)))
    assert page.tags == structure(report_html.to_html(record(harmless(strings)))).tags
    assert page.comments == 0
    assert visible(strings[33].replace("\r\n", "\n"), keep="\n\t") in "".join(page.text)


@given(TEXT)
def test_each_escaping_function_keeps_its_text_as_data(text: str) -> None:
    """The functions themselves, in the contexts they are for: the text comes back as written."""
    cell = PARSER.parse(f"| a |\n|---|\n| {md_cell(text)} |\n")
    assert tables(cell)[0][1] == [[shown_inline(text) or "—"]]
    code = PARSER.parse(f"| a |\n|---|\n| {md_code(text, in_table=True)} |\n")
    assert tables(code)[0][1][0][0] == (
        shown(text) if text.strip(" ") and one_line(text).strip(" ") else tables(code)[0][1][0][0]
    )
    inline = PARSER.parse(f"- {md_inline(text)}\n")
    assert [t.type for t in inline if t.level == 0] == ["bullet_list_open", "bullet_list_close"]
    block = PARSER.parse(md_code_block(text) + "\n\n# after\n")
    assert [t.type for t in block if t.level == 0][:2] == ["fence", "heading_open"]


def test_text_plans_show_invisible_characters(in_tmp: Any) -> None:
    from upgrader.planning.render import to_text

    plan = hostile_plan(["Acme\u202eevil\x1b[2J", *["x"] * 20])
    text = to_text(plan)
    assert "\u202e" not in text and "\x1b" not in text and "⟨U+202E⟩" in text and "⟨U+001B⟩" in text


def test_inputs_of_the_property_reach_the_plan(in_tmp: Any) -> None:
    """The property is only as good as its inputs: the hostile strings really are in the rendered plan."""
    strings = [f"marker{i}" for i in range(21)]
    markdown = to_markdown(hostile_plan(strings), window="w")
    missing = [s for s in strings if s not in markdown]
    assert missing == ["marker15"], missing  # used_by: which check reads a file, not shown


def _breaks_shown(text: str) -> str:
    return "".join(f"⟨U+{ord(c):04X}⟩" if one_line(c) != c else c for c in text)


@settings(max_examples=40, deadline=None)
@given(st.lists(TEXT, min_size=21, max_size=21))
def test_no_input_string_adds_a_line_to_the_text_plan_or_diff(strings: list[str]) -> None:
    """A line break in a value shows as ⟨U+000A⟩: the text plan and diff have the lines they would without it."""
    from upgrader.planning.render import to_text

    hostile, flat = hostile_plan(strings), hostile_plan([_breaks_shown(s) for s in strings])
    for verbose in (False, True):
        assert len(to_text(hostile, verbose=verbose).splitlines()) == len(to_text(flat, verbose=verbose).splitlines())
    text = to_text(hostile, verbose=True)
    assert "\x1b" not in text and "\u202e" not in text
    assert all(one_line(line) == line for line in text.splitlines())


@settings(max_examples=60, deadline=None)
@given(st.lists(TEXT, min_size=13, max_size=20))
def test_a_folded_host_list_keeps_its_row(names: list[str]) -> None:
    """More than 12 hosts fold into inline <details> in a cell, whose text is Markdown: still one cell."""
    from upgrader.planning.render import _hosts_cell

    tokens = PARSER.parse(f"| a | hosts | b |\n|---|---|---|\n| x | {_hosts_cell(names)} | y |\n")
    [(_, rows)] = tables(tokens)
    assert len(rows) == 1 and rows[0][0] == "x" and rows[0][2] == "y"
    tags = [c.content for t in tokens if t.type == "inline" for c in t.children or [] if c.type == "html_inline"]
    assert tags == ["<details>", "<summary>", "</summary>", "</details>"]


@settings(max_examples=300, deadline=None)
@given(TEXT)
@example("0\xa0")  # found by this file's report property: a version ending in a no-break space printed its asterisks
@example("\u2003x")
def test_bold_text_is_one_strong_span_whatever_its_edges(text: str) -> None:
    """``md_strong`` is one bold span of exactly the text (Unicode whitespace at its edges included), in prose and
    in a table cell."""
    for rendered, in_table in (
        (f"a {md_strong(text)} b", False),
        (f"| h |\n|---|\n| {md_strong(text, in_table=True)} |", True),
    ):
        tokens = PARSER.parse(rendered)
        inline = next(t for t in tokens if t.type == "inline" and (not in_table or t.content != "h"))
        kinds = [c.type for c in inline.children or [] if c.type not in ("text", "text_special", "softbreak")]
        if one_line(text).replace("\t", " ").strip(" ") and one_line(text).strip():
            assert kinds[:1] == ["strong_open"] and kinds[-1:] == ["strong_close"], (text, rendered, kinds)
            assert kinds.count("strong_open") == 1, (text, rendered, kinds)
