"""No invisible or control character reaches a host, a command line or a rendered plan (issue 25 §3).

The rule is by Unicode property (upgrader/charset.py).  It is checked over the whole code-point range,
through the pure check, the model validator and the YAML loader; and a hypothesis property puts a
refused character anywhere in any string of the real playbook and inventory and asks the real loader.
"""

from __future__ import annotations

import tempfile
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from upgrader import charset
from upgrader.commands.inputs import load_inputs
from upgrader.errors import InputError
from upgrader.loading import yamlfile
from upgrader.models import types

INPUTS = Path(__file__).parent / "inputs"
ALL = range(0x110000)
# The six the second review found passing an argv root runs.
REVIEWED = ["\u2060", "\u00ad", "\U000e0041", "\u061c", "\u0085", "\u180e"]
FORBIDDEN = [chr(c) for c in ALL if charset.forbidden(chr(c))]
Record = Callable[[str, object], None]  # pytest's record_property


@pytest.mark.reliability("the six characters of the review in an argv", "each refused by the validator")
def test_the_six_characters_the_review_found_are_refused(record_property: Record) -> None:
    refused = []
    for ch in REVIEWED:
        with pytest.raises(ValueError, match="invisible or control character") as info:
            types._argv(["/usr/bin/true", f"a{ch}b"])
        refused.append(str(info.value).split(" contains the ")[1].split(" at ")[0])
    record_property("observed", "; ".join(refused))


@pytest.mark.reliability(
    "every one of the 0x110000 code points through the pure check and the validator",
    "refused exactly when its category is Cc/Cf/Co/Cs/Cn/Zl/Zp, a bidi control, a "
    "non-ASCII space or default-ignorable; the validator agrees with the check",
)
def test_every_code_point(record_property: Record) -> None:
    started = time.monotonic()
    by_category: dict[str, int] = {}
    for code in ALL:
        ch = chr(code)
        category = unicodedata.category(ch)
        refused = charset.forbidden(ch)
        if (
            category in charset.FORBIDDEN_CATEGORIES
            or unicodedata.bidirectional(ch) in charset.BIDI_CONTROLS
            or (category == "Zs" and ch != " ")
        ):
            assert refused, f"U+{code:04X} ({category}) passes"
        if refused:
            by_category[category] = by_category.get(category, 0) + 1
        else:  # what passes is something a reader sees: a letter, mark, number, punctuation, symbol or the space
            assert category[0] in "LMNPS" or ch == " ", f"U+{code:04X} ({category}) passes"
        text = f"a{ch}b"
        assert (charset.first_forbidden(text) == 1) is refused  # the ASCII fast path agrees with the slow one
        try:
            types._safe_text(text)
        except ValueError:
            assert refused, f"U+{code:04X} refused by the validator but not by the check"
        else:
            assert not refused, f"U+{code:04X} passes the validator"
    seconds = time.monotonic() - started
    record_property(
        "observed",
        f"{len(FORBIDDEN)} of {len(ALL)} code points refused "
        f"({', '.join(f'{k} {v}' for k, v in sorted(by_category.items()))}); {seconds:.1f} s",
    )


def _escaped(code: int) -> str:
    return f'"a\\U{code:08X}b"'


@pytest.mark.reliability(
    "every code point of the BMP written as a YAML escape, through the loader (the whole "
    "range takes ~25 s there; the pure check above covers it, and the loader calls that check)",
    "a located problem for exactly the refused ones, none for the others",
)
def test_every_code_point_through_the_yaml_loader(record_property: Record) -> None:
    started = time.monotonic()
    located = 0
    for plane in range(1):
        codes = [c for c in range(plane << 16, (plane + 1) << 16) if not 0xD800 <= c <= 0xDFFF]
        text = "".join(f"- {_escaped(c)}\n" for c in codes)
        doc = yamlfile.parse(text, Path("plane.yml"))
        assert doc.data == [f"a{chr(c)}b" for c in codes]
        flagged = {line for line, _col in doc.invisible}
        expected = {i + 1 for i, c in enumerate(codes) if charset.forbidden(chr(c))}
        assert flagged == expected, sorted(flagged ^ expected)[:5]
        located += len(flagged)
    record_property(
        "observed",
        f"{located} refused values located at their line, the rest loaded "
        f"(surrogates cannot be written in YAML); {time.monotonic() - started:.1f} s",
    )


# ---------------------------------------------------------------- the property, through the real loader

WORK = Path(tempfile.mkdtemp(prefix="upgrader-charset-"))
SOURCES = {name: (INPUTS / name).read_text(encoding="utf-8") for name in ("playbook.yml", "inventory.yml")}
# YAML takes these literally inside a scalar; the rest must be written as escapes (or are line breaks).
_LITERAL_OK = (
    set(range(0x20, 0x7F)) | set(range(0xA0, 0xD800)) | set(range(0xE000, 0xFFFE)) | set(range(0x10000, 0x110000))
)
_BREAKS = {0x85, 0x2028, 0x2029}


def _string_scalars(text: str) -> list[yaml.ScalarNode]:
    """Every value (not key) that YAML reads as a string, written on one line without escapes."""
    found: list[yaml.ScalarNode] = []

    def walk(node: yaml.Node) -> None:
        if isinstance(node, yaml.MappingNode):
            for _key, value in node.value:
                walk(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item)
        elif (
            isinstance(node, yaml.ScalarNode)
            and node.tag == "tag:yaml.org,2002:str"
            and node.value
            and node.start_mark.line == node.end_mark.line
        ):
            source = text[node.start_mark.index : node.end_mark.index]
            if source in (node.value, f'"{node.value}"', f"'{node.value}'"):
                found.append(node)

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root)
    return found


SCALARS = {name: _string_scalars(text) for name, text in SOURCES.items()}


@st.composite
def insertions(draw: st.DrawFn) -> tuple[str, str, str, tuple[int, int]]:
    """(file, its new text, the character, where the error must point)."""
    name = draw(st.sampled_from(sorted(SOURCES)))
    text = SOURCES[name]
    node = draw(st.sampled_from(SCALARS[name]))
    ch = draw(st.sampled_from(FORBIDDEN).filter(lambda c: not 0xD800 <= ord(c) <= 0xDFFF))
    value = node.value
    at = draw(st.integers(0, len(value)))
    line, col = node.start_mark.line + 1, node.start_mark.column + 1
    if ord(ch) in _LITERAL_OK and ord(ch) not in _BREAKS and draw(st.booleans()):
        quote = text[node.start_mark.index] in "\"'"
        if not quote and at == 0 and unicodedata.category(ch) == "Zs":
            at = 1  # a plain scalar cannot begin with a space
        offset = node.start_mark.index + (1 if quote else 0) + at
        new = text[:offset] + ch + text[offset:]
        return name, new, ch, (line, col + (1 if quote else 0) + at)
    quoted = (
        '"'
        + "".join(
            f"\\U{ord(c):08X}" if c == ch else ("\\" + c if c in '"\\' else c) for c in value[:at] + ch + value[at:]
        )
        + '"'
    )
    new = text[: node.start_mark.index] + quoted + text[node.end_mark.index :]
    return name, new, ch, (line, col)


@pytest.mark.reliability(
    "a refused character inserted anywhere in any string of the playbook or inventory (hypothesis, literal or escaped)",
    "exactly one problem, at file:line:col of the "
    "character (of the value when escaped), naming it; nothing else reported",
)
def test_an_inserted_invisible_character_is_the_one_located_problem(
    record_property: Callable[[str, object], None],
) -> None:
    # The property runs inside the test so that what it inserted can be counted for the row.
    files: list[str] = []
    chars: set[str] = set()
    literal, problems_seen = 0, 0

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(insertions())
    def any_insertion(case: tuple[str, str, str, tuple[int, int]]) -> None:
        nonlocal literal, problems_seen
        name, text, ch, (line, col) = case
        for other, original in SOURCES.items():
            (WORK / other).write_text(text if other == name else original, encoding="utf-8")
        with pytest.raises(InputError) as info:
            load_inputs(WORK / "playbook.yml", WORK / "inventory.yml")
        problems = [str(p) for p in info.value.problems]
        assert problems == [
            f"{WORK / name}:{line}:{col}: invisible or control character {charset.describe(ch)} in a "
            "value — retype the value without it (only printable characters and the ASCII space are "
            "allowed; tabs and line breaks are not, see the README)"
        ]
        files.append(name)
        chars.add(ch)
        literal += ch in text
        problems_seen += len(problems)

    any_insertion()
    record_property(
        "observed",
        f"{len(files)} insertions ({literal} literal, {len(files) - literal} escaped; {len(chars)} distinct "
        f"characters; playbook {files.count('playbook.yml')}, inventory {files.count('inventory.yml')}): "
        f"{problems_seen} problems, each at the character's file:line:col",
    )


def test_the_property_observed(record_property: Record) -> None:
    """The property's inputs: how many string values it can hit, and that the originals load."""
    for name, original in SOURCES.items():
        (WORK / name).write_text(original, encoding="utf-8")
    load_inputs(WORK / "playbook.yml", WORK / "inventory.yml")
    record_property(
        "observed",
        ", ".join(f"{name}: {len(nodes)} string values" for name, nodes in SCALARS.items())
        + f"; {len(FORBIDDEN)} refused characters to draw from",
    )
