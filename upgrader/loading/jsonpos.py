"""Where a value is in a JSON text, by its path: the line and column a problem in a saved plan points at.

``json`` gives no positions, and a plan is read often and refused rarely: so the text is parsed
without them, and only when a problem is reported is the path walked again over the text,
skipping every value off the path with json's own decoder (linear in the text, in C).
"""

from __future__ import annotations

import json
import re

_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def position(text: str, loc: tuple[str | int, ...]) -> tuple[int, int]:
    """(line, column), 1-based, of the value at ``loc`` in ``text``, or of the deepest enclosing value found.

    ``text`` must be valid JSON (it was parsed already); a key present twice is found at its first.
    """
    found = _skip(text, 0)
    try:
        for part in loc:
            inner = _member(text, found, part)
            if inner is None:
                break
            found = inner
    except (ValueError, IndexError):  # not the JSON it was said to be: keep the last position found
        pass
    line = text.count("\n", 0, found) + 1
    return line, found - (text.rfind("\n", 0, found) + 1) + 1


def _member(text: str, pos: int, part: str | int) -> int | None:
    """Where the member ``part`` of the object or array starting at ``pos`` starts; None if it has none."""
    opening = text[pos]
    if not (opening == "{" and isinstance(part, str)) and not (opening == "[" and isinstance(part, int)):
        return None
    pos = _skip(text, pos + 1)
    index = 0
    while text[pos] not in "]}":
        if opening == "{":
            key, pos = _DECODER.raw_decode(text, pos)
            pos = _skip(text, _skip(text, pos) + 1)  # past the colon
            if key == part:
                return pos
        elif index == part:
            return pos
        _, pos = _DECODER.raw_decode(text, pos)
        pos = _skip(text, pos)
        if text[pos] == ",":
            pos = _skip(text, pos + 1)
        index += 1
    return None


def _skip(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    return match.end() if match else pos
