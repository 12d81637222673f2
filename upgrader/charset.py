"""Which characters a value may hold: none a reviewer cannot see (issue 25 §3).

A value in a playbook, inventory, facts or overrides file can reach a host (an argv root runs, a path),
a command line or a rendered plan.  A character that renders as nothing, or reorders what is shown
around it, makes the reviewed text differ from what runs.  So the rule is by Unicode property, not a
hand-written list of the characters someone thought of:

- general categories Cc (controls: C0, DEL, C1 such as U+0085), Cf (format: soft hyphen U+00AD, Arabic
  letter mark U+061C, Mongolian vowel separator U+180E, zero-width and word joiners U+200B-U+2060, bidi
  embeddings, overrides and isolates, tag characters U+E0000-U+E007F, the BOM), Co (private use), Cs
  (surrogates), Cn (unassigned in this Python's Unicode database: they may become anything), Zl and Zp
  (line and paragraph separators);
- every character whose bidi class is a control (LRE RLE PDF LRO RLO LRI RLI FSI PDI, and the marks LRM
  RLM ALM): all are Cf today; the bidi test keeps them out should a future Unicode move one;
- space separators (Zs) other than the ASCII space: U+00A0, U+2000-U+200A, U+3000 and the like look like
  a space, but an argv element holding one is one argument where the reviewer sees two;
- the Default_Ignorable_Code_Point characters that are letters or marks (Unicode's DerivedCoreProperties:
  Hangul fillers, combining grapheme joiner, variation selectors, Khmer inherent vowels, Mongolian free
  variation selectors): renderers draw nothing for them.  unicodedata does not expose the property, so
  the ranges not already in the categories above are listed once, here.

Tab and newline are controls (Cc) and are refused too, in every field: every text value is shown on one
line (a table cell, a headline, a log line, an argv element), and a line break inside one would be a
break the reviewer cannot tell from the layout.  No field is multi-line by nature today; a long
``description`` can be written as a YAML folded scalar (``>-``), which folds its lines into spaces.

``forbidden(ch)`` is a pure function; tests/unit/test_charset.py runs it over all 0x110000 code points.
"""

from __future__ import annotations

import functools
import unicodedata

FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
BIDI_CONTROLS = frozenset({"LRE", "RLE", "PDF", "LRO", "RLO", "LRI", "RLI", "FSI", "PDI"})
BIDI_MARKS = frozenset({"\u200e", "\u200f", "\u061c"})  # LRM, RLM, ALM (bidi class L/R/AL, so named)
# Default_Ignorable_Code_Point (DerivedCoreProperties.txt, Unicode 15) outside Cc/Cf/Cn.
IGNORABLE_RANGES = (
    (0x034F, 0x034F),  # COMBINING GRAPHEME JOINER (Mn)
    (0x115F, 0x1160),  # HANGUL CHOSEONG/JUNGSEONG FILLER (Lo)
    (0x17B4, 0x17B5),  # KHMER VOWEL INHERENT AQ/AA (Mn)
    (0x180B, 0x180D),  # MONGOLIAN FREE VARIATION SELECTORS (Mn)
    (0x180F, 0x180F),  # MONGOLIAN FREE VARIATION SELECTOR FOUR (Mn)
    (0x3164, 0x3164),  # HANGUL FILLER (Lo)
    (0xFE00, 0xFE0F),  # VARIATION SELECTORS (Mn)
    (0xFFA0, 0xFFA0),  # HALFWIDTH HANGUL FILLER (Lo)
    (0xE0100, 0xE01EF),  # VARIATION SELECTORS SUPPLEMENT (Mn)
)


@functools.lru_cache(maxsize=4096)
def forbidden(ch: str) -> bool:
    """True for a character no value may hold (see the module docstring)."""
    category = unicodedata.category(ch)
    if category in FORBIDDEN_CATEGORIES or ch in BIDI_MARKS:
        return True
    if category == "Zs" and ch != " ":
        return True
    if unicodedata.bidirectional(ch) in BIDI_CONTROLS:
        return True
    code = ord(ch)
    return any(low <= code <= high for low, high in IGNORABLE_RANGES)


def first_forbidden(text: str) -> int:
    """Index of the first forbidden character in ``text``, or -1.  ASCII printable text is checked at C speed."""
    if text.isascii() and text.isprintable():
        return -1
    for i, ch in enumerate(text):
        if forbidden(ch):
            return i
    return -1


def describe(ch: str) -> str:
    """``U+2060 WORD JOINER (Cf)``: how a refused character is named in an error (never the character itself)."""
    category = unicodedata.category(ch)
    name = unicodedata.name(ch, "") or _UNNAMED.get(category, "unnamed")
    return f"U+{ord(ch):04X} {name} ({category})"


_UNNAMED = {
    "Cc": "a control character",
    "Cs": "a surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
}


PROBLEM_WORDS = "invisible or control character"


def problem_text(text: str) -> str | None:
    """The one-line reason ``text`` is refused, or None when it may be used."""
    at = first_forbidden(text)
    if at < 0:
        return None
    return (
        f"contains the {PROBLEM_WORDS} {describe(text[at])} at character {at + 1} — "
        "retype the value without it (only printable characters and the ASCII space are allowed)"
    )
