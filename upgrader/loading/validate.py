"""Turn a parsed YAML document into a model, or into precise, located problems."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from upgrader import charset
from upgrader.errors import InputError, Problem
from upgrader.loading.yamlfile import Document

M = TypeVar("M", bound=BaseModel)

_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def validate(doc: Document, model: type[M]) -> M:
    """Validate ``doc.data`` against ``model``; every problem is reported at once.

    A value holding an invisible or control character (found by the loader) is one problem, located at
    the character: the model's complaint about the same value, if any, is not reported beside it.
    """
    try:
        value = model.model_validate(doc.data)
        problems: list[Problem] = []
    except ValidationError as exc:
        problems = problems_from(exc, doc, model)
    if doc.invisible:  # the model's own complaint about such a value (types._safe_text, a pattern) is a repeat
        starts = {(str(doc.path), line, col) for line, col in doc.invisible}
        problems = [
            p
            for p in problems
            if (p.location.file, p.location.line, p.location.column) not in starts
            and charset.PROBLEM_WORDS not in p.message
        ]
        problems = sorted(
            [*problems, *doc.invisible.values()],
            key=lambda p: (p.location.line or 0, p.location.column or 0, p.message),
        )
    if problems:
        raise InputError(problems) from None
    return value


def problems_from(exc: ValidationError, doc: Document, model: type[BaseModel]) -> list[Problem]:
    errors = exc.errors(include_url=False)
    # A misspelt required key is one mistake: report the unknown key (with "did you mean"), not also the missing one.
    misspelt = {
        (tuple(e["loc"][:-1]), close)
        for e in errors
        if e["type"] == "extra_forbidden"
        for close in _close(str(e["loc"][-1]), allowed_keys(model, tuple(e["loc"][:-1])))
    }
    problems: list[Problem] = []
    seen: set[tuple[Any, ...]] = set()
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] == "missing" and (loc[:-1], loc[-1]) in misspelt:
            continue
        problem = _problem(err, loc, doc, model)
        key = (str(problem.location), problem.message)
        if key not in seen:  # unions report the same spot several times
            seen.add(key)
            problems.append(problem)
    return sorted(problems, key=lambda p: (p.location.line or 0, p.location.column or 0, p.message))


def _problem(err: ErrorDetails, loc: tuple[Any, ...], doc: Document, model: type[BaseModel]) -> Problem:
    kind = err["type"]
    if kind == "extra_forbidden":
        key = _printable(str(loc[-1]))
        allowed = allowed_keys(model, loc[:-1])
        close = _close(str(loc[-1]), allowed)
        hint = (
            "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
            if close
            else f"allowed keys: {', '.join(sorted(allowed))}"
        )
        return Problem(doc.locate(loc, key=True), f"unknown key '{key}' in {_parent(loc)}", hint)
    if kind == "missing":
        return Problem(doc.locate(loc[:-1]), f"missing required key '{loc[-1]}' in {_parent(loc)}", "add it")
    shown = _without_union_tags(model, loc)
    where = _dotted(shown) or "(top level)"
    if shown != loc:  # one member of a union (e.g. a number or a percentage) failed: say what the field takes
        return Problem(
            doc.locate(shown), f"{where}: {_show(err.get('input'))} is not allowed here", _pattern_hint(model, shown)
        )
    message = str(err["msg"])
    hint = ""
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
        message, _, hint = message.partition(" — ")
        written = doc.float_texts.get(loc)
        if written is not None and isinstance(err.get("input"), float):  # 3.10 was read as 3.1: show 3.10
            message, hint = (text.replace(str(err["input"]), written) for text in (message, hint))
    elif kind in _TYPE_WORDS:
        message = f"expected {_TYPE_WORDS[kind]}, got {_show(err.get('input'))}"
    elif kind == "string_pattern_mismatch":
        message = f"{_show(err.get('input'))} is not allowed here"
        hint = _pattern_hint(model, loc)
    elif kind == "literal_error":
        message = f"{_show(err.get('input'))} is not one of the allowed values"
        hint = str(err["msg"]).replace("Input should be ", "use ")
    return Problem(doc.locate(loc), f"{where}: {message}", hint)


def _parent(loc: tuple[Any, ...]) -> str:
    return _dotted(loc[:-1]) or "the top level"


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(_printable(str(part)) for part in loc)


def _printable(text: str) -> str:
    """Keys come from the file: newlines or bidi controls must not reshape the one-line report."""
    return text if text.isprintable() else repr(text)[1:-1]


def _close(word: str, choices: list[str]) -> list[str]:
    """Up to two likely intended keys, closest first; equal scores prefer the one of similar length."""
    scored = [(difflib.SequenceMatcher(None, word, c).ratio(), -abs(len(c) - len(word)), c) for c in choices]
    return [c for ratio, _, c in sorted(scored, reverse=True) if ratio >= 0.6][:2]


def _without_union_tags(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """``loc`` without the member names pydantic adds under a union (rollout.batch.int → rollout.batch)."""
    shown: list[Any] = []
    current: Any = model
    for part in loc:
        current = _strip_annotated(current)
        members = [a for a in typing.get_args(current) if a is not type(None)] if _is_union(current) else []
        if len(members) > 1 and isinstance(part, str):
            current = Any  # ``part`` names a member, not a key the person wrote
            continue
        if len(members) == 1:
            current = _strip_annotated(members[0])
        shown.append(part)
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            field = current.model_fields.get(part)
            current = field.annotation if field is not None else Any
        elif current is not Any:
            current = _element(current)
    return tuple(shown)


def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _pattern_hint(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    field = _field_at(model, loc)
    if field is not None and field.description:
        return f"expected {field.description}"
    return "see `upgrader schema` for the allowed form"


def _field_at(model: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    current: Any = model
    field = None
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            field = current.model_fields.get(part)
            if field is None:
                return None
            current = field.annotation
        else:
            current = _element(current)
    return field


def allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys a mapping at ``loc`` may hold, found by walking the model's annotations."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            field = current.model_fields.get(part)
            if field is None:
                return []
            current = field.annotation
        else:
            current = _element(current)
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    """Strip Optional[...] and Annotated[...] down to the model or container type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            tp = models[0] if models else args[0]
        else:
            return tp


def _element(tp: Any) -> Any:
    args = typing.get_args(_unwrap(tp))
    return args[-1] if args else Any
