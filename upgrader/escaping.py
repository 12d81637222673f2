"""Every string a renderer did not write itself goes through exactly one function here, by output kind.

A playbook, an inventory and a host's answers are outside input: a backtick, a ``|``, a fence or
``<!--`` in them must show as those characters, never change the structure around them (add a
table column, end a code block, open an HTML comment that hides the sections after it).  So each
output kind has one function, and every renderer uses it (planning/render.py, commands/diff.py,
reporting/markdown.py, reporting/html.py):

- ``md_inline``: text in a Markdown paragraph, list item, heading or emphasis;
- ``md_cell``: text in a GFM table cell;
- ``md_code``: an inline code span (``in_table`` for one inside a table cell);
- ``md_code_block``: a fenced code block whose fence is longer than any backtick run in it;
- ``md_html``: text inside an HTML block of a Markdown document (``<summary>``, ``<code>``; between
  inline tags the text is Markdown, so ``md_inline``/``md_cell`` apply there);
- ``html``: text in an HTML document.

Characters a reader cannot see (controls, format characters such as bidi overrides, unassigned,
private-use and surrogate code points, line and paragraph separators) are shown as ``⟨U+XXXX⟩``
in every kind: validation refuses them where they are input (issue 25 §3), and what slips through
still cannot reorder or hide what a reviewer reads.  tests/unit/test_render_escaping.py holds the
renderers to this with random strings, parsed by markdown-it-py and html.parser.
"""

from __future__ import annotations

import html as _html
import re
import unicodedata

# Categories a reader cannot see or that move text around; \n and \t are handled per kind.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
# Every ASCII punctuation character CommonMark lets a backslash escape that can open an inline
# construct or a block at a line start; < > & become entities (they also work inside raw HTML).
_MD_SPECIAL = re.compile(r"([\\`*_\[\]!|~#$])")
# At the start of a line (a list item's text, a paragraph): what would open a block there.
_BLOCK_START = re.compile(r"^([-+](?=[-+ \t]|$)|\d{1,9}(?=[.)](?:[ \t]|$)))")
_LINE_BREAKS = re.compile(r"\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
_BACKTICKS = re.compile(r"`+")


def visible(text: str, keep: str = "") -> str:
    """``text`` with every invisible or direction-changing character but those in ``keep`` written as ``⟨U+XXXX⟩``."""
    if text.isascii() and text.isprintable():
        return text  # the common case, without a look at each character
    return "".join(
        f"⟨U+{ord(c):04X}⟩" if c not in keep and unicodedata.category(c) in _HIDDEN_CATEGORIES else c for c in text
    )


def one_line(text: str) -> str:
    """Line breaks (every kind Python or CommonMark knows) as spaces: inline text cannot start a block."""
    return _LINE_BREAKS.sub(" ", text)


def md_inline(text: object) -> str:
    """Text in Markdown prose: shows as written, opens no link, emphasis, code, HTML or block."""
    flat = one_line(str(text)).replace("\t", " ")
    escaped = _MD_SPECIAL.sub(r"\\\1", flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
    stripped = escaped.lstrip(" ")  # leading spaces would indent a code block in a list item: entities do not
    escaped = "&#32;" * (len(escaped) - len(stripped)) + _BLOCK_START.sub(_escape_start, stripped)
    return visible(escaped)


def md_cell(text: object, empty: str = "—") -> str:
    """Text in a GFM table cell: as ``md_inline`` (whose escaped ``|`` the table keeps in its cell)."""
    return md_inline(text) if one_line(str(text)).strip() else empty


def md_strong(text: object, *, in_table: bool = False) -> str:
    """``text`` in bold (``**…**``), as ``md_inline``/``md_cell`` show it.  CommonMark ends no emphasis after
    Unicode whitespace nor opens one before it (a version "0\u00a0" would print its asterisks instead and
    shift the row's structure): whitespace at either edge is written as a character reference."""
    body = md_cell(text) if in_table else md_inline(text)
    core = body.strip()
    if not core:
        return body
    lead, trail = body[: len(body) - len(body.lstrip())], body[len(body.rstrip()) :]
    return "**" + "".join(f"&#{ord(c)};" for c in lead) + core + "".join(f"&#{ord(c)};" for c in trail) + "**"


def md_code(text: object, *, in_table: bool = False) -> str:
    """An inline code span of ``text``: delimited by one backtick more than its longest backtick run."""
    body = visible(one_line(str(text)).replace("\t", " "))
    if in_table:  # GFM splits a row at every unescaped '|', code spans included; the escape is removed
        body = body.replace("|", "\\|")
    if not body.strip(" "):
        return md_inline(body)  # nothing to show in code
    fence = "`" * (_longest_run(body) + 1)
    pad = " " if body.startswith("`") or body.endswith("`") or (body[0] == body[-1] == " ") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def md_code_block(text: object, info: str = "text") -> str:
    """A fenced code block of ``text`` (lines kept): the fence is longer than any backtick run inside.

    ``info`` is the renderer's own language tag, never input.
    """
    body = visible(str(text).replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    "), keep="\n")
    fence = "`" * max(3, _longest_run(body) + 1)
    return f"{fence}{info}\n{body.rstrip(chr(10))}\n{fence}"


def md_html(text: object) -> str:
    """Text inside an HTML block of a Markdown document: escaped, on one line (a blank line ends the block).

    Only in an HTML *block* (a line starting with ``<details>``): there no Markdown is read.  Between
    inline tags (in a paragraph or a table cell) the text is Markdown: use ``md_inline``/``md_cell``.
    """
    return visible(_html.escape(one_line(str(text)), quote=True))


def html(text: object) -> str:
    """Text in an HTML document (element content or a quoted attribute value)."""
    return visible(_html.escape(str(text).replace("\r\n", "\n"), quote=True), keep="\n\t")


def _escape_start(match: re.Match[str]) -> str:
    """``-`` becomes ``\\-``; ``12.`` becomes ``12\\.`` (the period follows the match)."""
    text = match.group(1)
    return "\\" + text if not text.isdigit() else text + "\\"


def _longest_run(text: str) -> int:
    return max((len(m) for m in _BACKTICKS.findall(text)), default=0)
