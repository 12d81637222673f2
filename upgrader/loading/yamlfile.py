"""YAML documents that remember where every value came from.

Validation errors must name ``file:line:col``; PyYAML's node tree has the
marks, so we compose once and construct the plain Python value from the nodes.
The mark of every path is recorded when a problem first asks for one
(``Document.locate``: the text is parsed again, recording), not on every load:
a valid 10,000-host inventory has 80,000 paths nobody looks up.  Problems found
while building (tags, aliases, keys, spellings) take the node's own mark.
Duplicate mapping keys (which PyYAML silently resolves to the last one) are
reported as problems.

Nothing in a file may make loading run away: the size is capped per kind of
input (``bounded_read``), aliases are refused, nesting is bounded, and only the
tags plain YAML resolves to are accepted.  YAML 1.1 reads ``010`` as 8 and
``.inf`` as infinity; such spellings are refused with a hint to quote them.

No string, key or value, may hold an invisible or control character (``upgrader.charset``): every
value may reach a host, a command line or a rendered plan, so the check is here, on every scalar of
every file, and the error points at the character itself where the file holds it literally (at the
value when it was written as an escape such as ``"\u2060"``).  ``loading.validate`` reports these
with the model's other problems; a document with any is never turned into a model.
"""

from __future__ import annotations

import contextlib
import gc
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from upgrader import charset
from upgrader.errors import InputError, Location, Problem
from upgrader.loading import bounded_read

try:  # the C loader is ~10x faster on large inventories
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - libyaml missing
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

PathKey = tuple[str | int, ...]


@dataclass
class Document:
    """A parsed YAML file: its data and the position of each value by path."""

    path: Path
    data: Any
    text: str
    marks: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    # Source text of scalars read as floats: 3.10 becomes 3.1, and a hint must show what was written.
    float_texts: dict[PathKey, str] = field(default_factory=dict)
    # Values holding an invisible or control character, by where the value starts: validation reports
    # them (loading.validate) together with the model's other problems, in place of the model's own
    # complaint about the same value.
    invisible: dict[tuple[int, int], Problem] = field(default_factory=dict)
    # False while ``marks`` and ``key_marks`` are not recorded yet: ``parse`` leaves them to the first
    # ``locate`` (only a problem needs a position), which records them from ``text`` (``mark``).
    marked: bool = True

    def locate(self, loc: PathKey, *, key: bool = False) -> Location:
        """The closest known position for ``loc`` (walks up to a parent)."""
        if not self.marked:
            self.mark()
        table = self.key_marks if key and loc in self.key_marks else self.marks
        probe = tuple(loc)
        while probe and probe not in table:
            probe = probe[:-1]
        line, col = table.get(probe, (1, 1))
        return Location(str(self.path), line, col)

    def mark(self) -> None:
        """Record the position of every value and key, as an eager ``parse`` does.

        The text parsed once without problems, so it composes again to the same nodes; recording costs
        what the first parse did (~0.5 s for a 10,000-host inventory), on the way to reporting a problem.
        """
        eager = parse(self.text, self.path, marks=True)
        self.marks.update(eager.marks)
        self.key_marks.update(eager.key_marks)
        self.marked = True


def load(path: Path, kind: str = "playbook") -> Document:
    """Read (within the size cap of ``kind``) and parse one YAML file, or raise InputError naming file:line."""
    return parse(bounded_read.read_text(path, kind), path)


def parse(text: str, path: Path, *, marks: bool = False) -> Document:
    """``text`` as a Document, or InputError naming file:line for anything refused.

    ``marks``: record every value's position now; by default the first ``Document.locate`` records them
    (most files have no problem to locate, and recording was a fifth of parsing a large inventory).
    """
    with _no_cycle_collection():
        return _parse(text, path, marks)


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """The cyclic garbage collector paused while a text is composed and built.

    Composing allocates ~6 tracked objects a node (the node, its dict, marks, lists) that are freed by
    reference counting when the build is done, and the build makes dicts and lists that hold no
    cycles: the collector, started every 50,000 new objects even at the CLI's thresholds (cli.main),
    walked them for nothing — 0.3 s of the 0.45 s of building a 10,000-host inventory.  Memory is
    bounded by the input's size cap either way; a cycle made meanwhile is collected later.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _parse(text: str, path: Path, marks: bool) -> Document:
    try:
        node = compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(str(path), mark.line + 1, mark.column + 1) if mark else Location(str(path))
        what = " ".join((exc.problem or exc.context or "invalid YAML").split())
        hint = "nest less deeply" if "nesting depth" in what else "fix the YAML syntax"
        raise InputError([Problem(loc, f"YAML syntax error: {what}", hint)]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, other controls)
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise InputError(
            [
                Problem(
                    Location(str(path), line, col),
                    f"YAML syntax error: character #x{exc.character:04x} is not allowed",
                    "remove it (control characters are not allowed in YAML)",
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise InputError([Problem(Location(str(path)), f"YAML error: {' '.join(str(exc).split())}")]) from None
    doc = Document(path=path, data=None, text=text, marked=marks)
    if node is None:
        raise InputError([Problem(Location(str(path), 1, 1), "the file is empty", "see the README for the format")])
    builder = _Builder(doc, record=marks)
    doc.data = builder.construct(node, ())
    if builder.problems:
        raise InputError(builder.problems)
    return doc


def compose(text: str) -> yaml.Node | None:
    """The node tree of ``text`` (libyaml's parser; tags resolved as PyYAML's SafeLoader resolves them)."""
    return yaml.compose(text, Loader=_Loader)


# Scalars are built the way PyYAML's SafeConstructor builds them: str, null, decimal int, bool and
# plain-decimal float directly (what SafeConstructor does for them, minus its per-node bookkeeping:
# a third of parsing a large inventory); every other spelling through SafeConstructor itself, so its
# values and its errors (an impossible date, an integer of thousands of digits) are unchanged.
# tests/unit/test_yaml_scalars.py holds the two equal.  Called per node: ``construct_object`` would
# also keep every node it saw in ``constructed_objects``, for the life of the process.
_constructor = yaml.SafeLoader("")
_YAML = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT_TAG, _BOOL, _NULL = (_YAML + t for t in ("str", "int", "float", "bool", "null"))
# The only tags a value may carry (what plain YAML resolves to); any other tag (!foo, !!python/..., !!binary,
# !!set, !!omap) is refused: it would construct something the models do not describe.
_SCALAR_TAGS = {_YAML + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
_DECIMAL = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
_BOOLS = yaml.constructor.SafeConstructor.bool_values
_SHORT_INT = 18  # digits int() reads with no limit to reach (sys.get_int_max_str_digits is 4300)


def scalar_value(node: yaml.ScalarNode) -> Any:
    """The value SafeConstructor builds for ``node`` (a tag of _SCALAR_TAGS), or the error it raises."""
    tag, text = node.tag, node.value
    if tag == _STR:
        return text
    if tag == _NULL:
        return None
    if tag == _INT and len(text) <= _SHORT_INT and _DECIMAL.fullmatch(text):
        return int(text)
    if tag == _BOOL and text.lower() in _BOOLS:
        return _BOOLS[text.lower()]
    if tag == _FLOAT_TAG and _FLOAT.fullmatch(text):
        return float(text)  # what SafeConstructor computes (sign * float(digits)) for this spelling
    return _constructor.yaml_constructors[tag](_constructor, node)


class _Builder:
    """Constructs plain values from composed nodes, recording marks; refuses what could run away.

    Aliases (``*name``) are refused: composed nodes are shared, so a few lines of anchors can stand for
    billions of values (the "billion laughs"); no input needs them.  A node met a second time is an
    alias; it is not descended into again, so construction stays linear in the size of the text.
    ``record``: record each value's and key's position in the document (``Document.marks``).
    """

    def __init__(self, doc: Document, *, record: bool = True) -> None:
        self.doc = doc
        self.record = record
        self.problems: list[Problem] = []
        self.seen: set[int] = set()
        self.aliased = False

    def construct(self, node: yaml.Node, path: PathKey) -> Any:
        if id(node) in self.seen:
            self._alias()
            return None
        self.seen.add(id(node))
        doc = self.doc
        if self.record:
            doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if len(path) >= bounded_read.MAX_DEPTH:
            self.problems.append(
                _problem(
                    doc,
                    node,
                    f"nested deeper than {bounded_read.MAX_DEPTH} levels",
                    "no input needs this much nesting; check the indentation",
                )
            )
            return None
        if type(node) is yaml.ScalarNode:
            return self._scalar(node, path)
        if type(node) is yaml.MappingNode:
            if node.tag != _YAML + "map":
                self.problems.append(_tag_problem(doc, node))
                return None
            return self._mapping(node, path)
        if node.tag != _YAML + "seq":
            self.problems.append(_tag_problem(doc, node))
            return None
        return [self.construct(item, (*path, i)) for i, item in enumerate(node.value)]

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[str, Any]:
        doc, result, seen = self.doc, {}, self.seen
        for key_node, value_node in node.value:
            if key_node.tag == _YAML + "merge":
                self.problems.append(
                    _problem(doc, key_node, "YAML merge keys (<<) are not supported", "write the keys out")
                )
                continue
            if type(key_node) is not yaml.ScalarNode or id(key_node) in seen:
                if id(key_node) in seen:
                    self._alias()
                else:
                    self.problems.append(_problem(doc, key_node, "a mapping key must be a string", "quote it"))
                continue
            before = len(self.problems)
            key = self._scalar(key_node, (*path, "<key>"))
            seen.add(id(key_node))
            if len(self.problems) > before:  # its tag or spelling was refused already
                continue
            if type(key) is not str:
                if not isinstance(key, str | int) or isinstance(key, bool):
                    self.problems.append(_problem(doc, key_node, f"mapping key {key!r} must be a string", "quote it"))
                    continue
                key = str(key)
            if key in result:
                self.problems.append(_problem(doc, key_node, f"duplicate key {key!r}", "remove one of them"))
                continue
            if self.record:
                doc.key_marks[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = self.construct(value_node, (*path, key))
        return result

    def _scalar(self, node: yaml.ScalarNode, path: PathKey) -> Any:
        doc, tag = self.doc, node.tag
        if tag not in _SCALAR_TAGS:
            self.problems.append(_tag_problem(doc, node))
            return None
        text = node.value
        if tag == _FLOAT_TAG:
            doc.float_texts[path] = text
        try:
            value = scalar_value(node)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:  # an impossible date (2026-02-30), a huge int
            self.problems.append(
                _problem(
                    doc,
                    node,
                    f"cannot read value {_show(text)}: {' '.join(str(exc).split())}",
                    "quote it if it is text; dates are YYYY-MM-DD and must exist",
                )
            )
            return None
        if tag == _INT and not _DECIMAL.fullmatch(text):
            # YAML 1.1: 010 is octal 8, 0x10 is 16, 1:30 is 90, 1_000 is 1000 — never what a version meant.
            self.problems.append(
                _problem(
                    doc,
                    node,
                    f"{_show(text)} is read by YAML 1.1 as the number {value}",
                    f"quote it if you mean the text ('{text}'), or write {value}",
                )
            )
            return None
        if tag == _FLOAT_TAG and (not _FLOAT.fullmatch(text) or not math.isfinite(value)):
            self.problems.append(
                _problem(
                    doc,
                    node,
                    f"{_show(text)} is not a finite decimal number",
                    "write a plain number such as 30 or 2.5 (or quote it if it is text)",
                )
            )
            return None
        if type(value) is str and (at := charset.first_forbidden(value)) >= 0:
            what = "key" if path[-1:] == ("<key>",) else "value"
            start = (node.start_mark.line + 1, node.start_mark.column + 1)
            doc.invisible.setdefault(start, _invisible_problem(doc, node, value[at], what))
        return value

    def _alias(self) -> None:
        if self.aliased:
            return
        self.aliased = True
        for mark in _alias_marks(self.doc.text):
            self.problems.append(
                Problem(
                    Location(str(self.doc.path), mark.line + 1, mark.column + 1),
                    "YAML aliases (*name) are not supported",
                    "write the value out in full (anchors and aliases could make a small file expand without bound)",
                )
            )
        if not any("aliases" in p.message for p in self.problems):  # pragma: no cover - scanner found none
            self.problems.append(
                Problem(
                    Location(str(self.doc.path)),
                    "YAML aliases (*name) are not supported",
                    "write the value out in full",
                )
            )


def _alias_marks(text: str, limit: int = 1) -> list[yaml.Mark]:
    """Where the first alias is (composed nodes do not remember where an alias pointed at them)."""
    marks: list[yaml.Mark] = []
    try:
        for token in yaml.scan(text, Loader=_Loader):
            if isinstance(token, yaml.AliasToken):
                marks.append(token.start_mark)
                if len(marks) == limit:
                    break
    except yaml.YAMLError:  # pragma: no cover - the text composed once already
        pass
    return marks


def _invisible_problem(doc: Document, node: yaml.Node, ch: str, what: str) -> Problem:
    """Where ``ch`` is in the file: the character itself when written literally, else the value's start."""
    start, end = node.start_mark, node.end_mark
    at = doc.text.find(ch, start.index, max(end.index, start.index + 1))
    line, col = start.line + 1, start.column + 1
    if at >= 0:
        line = doc.text.count("\n", 0, at) + 1
        col = at - (doc.text.rfind("\n", 0, at) + 1) + 1
    return Problem(
        Location(str(doc.path), line, col),
        f"invisible or control character {charset.describe(ch)} in a {what}",
        "retype the value without it (only printable characters and the ASCII space are allowed; "
        "tabs and line breaks are not, see the README)",
    )


def _tag_problem(doc: Document, node: yaml.Node) -> Problem:
    return _problem(
        doc,
        node,
        f"YAML tag {_show(node.tag.replace(_YAML, '!!'))} is not supported",
        "remove the tag; write plain values (quote text)",
    )


def _show(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 40 else shown[:37] + "...'"


def _problem(doc: Document, node: yaml.Node, message: str, hint: str = "") -> Problem:
    loc = Location(str(doc.path), node.start_mark.line + 1, node.start_mark.column + 1)
    return Problem(loc, message, hint)
