"""YAML documents that remember where every value came from.

Validation errors must name ``file:line:col``; PyYAML's node tree has the
marks, so we compose once, record a mark per path and construct the plain
Python value from the same nodes.  Duplicate mapping keys (which PyYAML
silently resolves to the last one) are reported as problems.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from upgrader.errors import InputError, Location, Problem

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

    def locate(self, loc: PathKey, *, key: bool = False) -> Location:
        """The closest known position for ``loc`` (walks up to a parent)."""
        table = self.key_marks if key and loc in self.key_marks else self.marks
        probe = tuple(loc)
        while probe and probe not in table:
            probe = probe[:-1]
        line, col = table.get(probe, (1, 1))
        return Location(str(self.path), line, col)


def load(path: Path) -> Document:
    """Read and parse one YAML file, or raise InputError naming file:line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError([Problem(Location(str(path)), "file not found", "check the path")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError([Problem(Location(str(path)), f"cannot read file: {exc}")]) from None
    return parse(text, path)


def parse(text: str, path: Path) -> Document:
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(str(path), mark.line + 1, mark.column + 1) if mark else Location(str(path))
        what = exc.problem or exc.context or "invalid YAML"
        raise InputError([Problem(loc, f"YAML syntax error: {what}", "fix the YAML syntax")]) from None
    except yaml.YAMLError as exc:
        raise InputError([Problem(Location(str(path)), f"YAML error: {exc}")]) from None
    doc = Document(path=path, data=None, text=text)
    if node is None:
        raise InputError([Problem(Location(str(path), 1, 1), "the file is empty", "see the README for the format")])
    problems: list[Problem] = []
    doc.data = _construct(node, (), doc, problems)
    if problems:
        raise InputError(problems)
    return doc


_constructor = yaml.SafeLoader("")  # used only for scalar resolution


def _construct(node: yaml.Node, path: PathKey, doc: Document, problems: list[Problem]) -> Any:
    doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                problems.append(_problem(doc, key_node, "YAML merge keys (<<) are not supported", "write the keys out"))
                continue
            key = _constructor.construct_object(key_node, deep=True)
            if not isinstance(key, str | int) or isinstance(key, bool):
                problems.append(_problem(doc, key_node, f"mapping key {key!r} must be a string", "quote it"))
                continue
            key = str(key)
            if key in result:
                problems.append(_problem(doc, key_node, f"duplicate key {key!r}", "remove one of them"))
                continue
            doc.key_marks[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = _construct(value_node, (*path, key), doc, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), doc, problems) for i, item in enumerate(node.value)]
    if node.tag == "tag:yaml.org,2002:float":
        doc.float_texts[path] = node.value
    try:
        return _constructor.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: an unquoted impossible date, e.g. 2026-13-40
        problems.append(_problem(doc, node, f"cannot read value: {exc}"))
        return None


def _problem(doc: Document, node: yaml.Node, message: str, hint: str = "") -> Problem:
    loc = Location(str(doc.path), node.start_mark.line + 1, node.start_mark.column + 1)
    return Problem(loc, message, hint)
