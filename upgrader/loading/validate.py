"""Turn a parsed YAML document into a model, or into precise, located problems."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

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
    """Validate ``doc.data`` against ``model``; every problem is reported at once."""
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        raise InputError(problems_from(exc, doc, model)) from None


def problems_from(exc: ValidationError, doc: Document, model: type[BaseModel]) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[Any, ...]] = set()
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        problem = _problem(err, loc, doc, model)
        key = (str(problem.location), problem.message)
        if key not in seen:  # unions report the same spot several times
            seen.add(key)
            problems.append(problem)
    return sorted(problems, key=lambda p: (p.location.line or 0, p.location.column or 0, p.message))


def _problem(err: dict[str, Any], loc: tuple[Any, ...], doc: Document, model: type[BaseModel]) -> Problem:
    where = ".".join(str(part) for part in loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = allowed_keys(model, loc[:-1])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(sorted(allowed))}"
        return Problem(doc.locate(loc, key=True), f"unknown key '{key}' in {_parent(loc)}", hint)
    if kind == "missing":
        return Problem(doc.locate(loc[:-1]), f"missing required key '{loc[-1]}' in {_parent(loc)}", "add it")
    message = str(err["msg"])
    hint = ""
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
        message, _, hint = message.partition(" — ")
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
    return ".".join(str(p) for p in loc[:-1]) or "the top level"


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
