"""Constrained scalar types shared by the playbook and inventory models.

Values are data, never shell: a version such as ``1.0; rm -rf /`` is refused
here, long before anything could reach a host.  Each type carries a JSON
Schema pattern so editors flag the same mistakes.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from upgrader import charset, versions

NAME_RE = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class Strict(BaseModel):
    """Base model: unknown keys are errors, instances are immutable.

    defer_build: a model's validator is built when it is first used, not at import.  `rollback`
    imports every model but validates only the inventory and playbook; building the plan's and the
    facts' validators up front cost ~15 ms on its emergency path.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True, defer_build=True)


M = TypeVar("M", bound=Strict)


def trusted(cls: type[M], **values: Any) -> M:
    """``cls.model_construct(**values)`` for values taken from validated models, every field given.

    Does what ``model_construct`` does for a Strict model (no aliases, extra forbidden, no private
    attributes) without its per-field alias and default lookups, which make it slower than
    validation.  All instances of a class share one fields-set instead of a new set each: a
    10,000-host plan has ~40,000 models, and every extra container is one more object for the
    cyclic garbage collector to walk.  Safe because Strict models are frozen (``model_copy``
    copies the set before changing it).  tests/unit/test_plan_serialization.py holds it to
    ``model_construct``.
    """
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", values)
    object.__setattr__(model, "__pydantic_fields_set__", _field_names(cls))
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


@functools.cache
def _field_names(cls: type[Strict]) -> set[str]:
    return set(cls.model_fields)


# A version names the directory releases/<version> on every host: it must be one path component a
# filesystem takes (no '/', no NUL, not '.' or '..', not hundreds of bytes).  PEP 440 already keeps
# out '/' and NUL; the length is ours.
MAX_VERSION_LENGTH = 64
_DIRECTORY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]*")


def _version(value: Any) -> str:
    """A version as written: kept literally (equality is on the literal; versions.py), checked to be a
    version of some scheme (the playbook checks its own) and a name a release directory can have."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        if isinstance(value, float):
            raise ValueError(f"version {value!r} was read as a number — quote it, e.g. '{value}'")
        raise ValueError(f"version must be a string, got {type(value).__name__}")
    text = str(value)
    if len(text) > MAX_VERSION_LENGTH:
        raise ValueError(
            f"version {text[:20]!r}… is longer than {MAX_VERSION_LENGTH} characters — it names a "
            "directory on every host; use a short version such as 5.2.0"
        )
    if not _DIRECTORY_NAME_RE.fullmatch(text) or not versions.valid_in_some_scheme(text):
        raise ValueError(
            f"invalid version {text!r} — use a PEP 440 version such as 5.2.0 or 5.2.0rc1, or a vendor version "
            "such as 5.2.0_b123 (with version_scheme: vendor)"
        )
    return text


def _specifier(value: Any) -> str:
    """A specifier set as written (its versions are literals too); the playbook checks it under its scheme."""
    if isinstance(value, float):
        raise ValueError(f"specifier {value!r} was read as a number — quote it, e.g. '>={value}'")
    if not isinstance(value, str):
        raise ValueError(f"specifier must be a string such as '>=4.2,<4.4', got {type(value).__name__}")
    text = ",".join(part.strip() for part in value.split(","))
    if not text or not versions.valid_spec_in_some_scheme(text):
        raise ValueError(f"invalid version specifier {value!r} — use a form such as '>=4.2,<4.4'")
    return text


# No wait, timeout, bake or margin upgrader takes is longer than a day; a larger figure is a typo
# (a bake of 86400m) that would hold a run, and its locks, for months.  Documented in the README.
MAX_DURATION = 24 * 3600.0


def _duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("duration must be a number of seconds or a string such as '30s', '5m'")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an integer of hundreds of digits
            seconds = math.inf
    elif isinstance(value, str) and len(value) <= 32 and (m := _DURATION_RE.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(
            f"invalid duration {_short(value)} — use seconds or a string such as '500ms', '30s', '5m', '1h'"
        )
    if math.isnan(seconds):
        raise ValueError("duration must be a number, not NaN — use seconds or a string such as '30s'")
    if seconds < 0:
        raise ValueError("duration must not be negative")
    if seconds > MAX_DURATION:
        raise ValueError(
            f"duration {_short(value)} is longer than the maximum of 24h — use at most '24h' "
            "(durations are limited; see the README)"
        )
    return seconds


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _date(value: Any) -> str:
    """A calendar day as 'YYYY-MM-DD' that exists (2026-02-30 does not)."""
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date | str):
        raise ValueError(f"expected a date such as '2026-12-24', got {_short(value)}")
    if isinstance(value, str):
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(f"{_short(value)} is not a date — write YYYY-MM-DD, e.g. '2026-12-24'")
        try:
            day = dt.date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a day of the calendar ({exc}) — check the day and month") from None
        return day.isoformat()
    return value.isoformat()


MAX_PATTERN_LENGTH = 1000


def _pattern(value: Any) -> Any:
    """A regular expression the agent will use on a host: it must compile here, not fail there mid-run."""
    if not isinstance(value, str):
        return value  # the str type reports it
    _safe_text(value)
    if len(value) > MAX_PATTERN_LENGTH:
        raise ValueError(f"pattern is longer than {MAX_PATTERN_LENGTH} characters — shorten it")
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ValueError(
            f"{_short(value)} is not a valid regular expression ({exc}) — fix the pattern (Python re syntax)"
        ) from None
    return value


def _not_an_option(value: Any) -> Any:
    """Values passed on as command arguments must not read as options (``-rf``, ``--help``)."""
    if isinstance(value, str) and value.startswith("-"):
        raise ValueError(
            f"{_short(value)} must not start with '-' (a command would read it as an option) — remove the leading '-'"
        )
    return value


def _sha256(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise ValueError("sha256 must be 64 hexadecimal characters — copy it from the vendor's .sha256 file")
    return value.lower()


def _safe_text(value: Any) -> Any:
    """No invisible or control character (``upgrader.charset``).  The YAML loader refuses them in every
    value first, with the character's position; this keeps them out of values read from JSON too."""
    if isinstance(value, str) and (reason := charset.problem_text(value)) is not None:
        raise ValueError(f"{_short(value)} {reason}")
    return value


def _abs_path(value: Any) -> Any:
    _safe_text(value)
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"{value!r} must be an absolute path such as /opt/ordergw")
    if any(part == ".." for part in value.split("/")):
        raise ValueError(f"{value!r} must not contain '..'")
    if len(value) > 1 and value.endswith("/"):
        value = value.rstrip("/")
    return value


def _rel_path(value: Any) -> Any:
    _safe_text(value)
    _not_an_option(value)
    if not isinstance(value, str) or not value or value.startswith("/"):
        raise ValueError(f"{value!r} must be a relative path such as etc/local.conf")
    if any(part in ("..", "") for part in value.split("/")):
        raise ValueError(f"{value!r} must not contain '..' or empty components")
    return value


def _argv(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(
            "commands are lists of arguments, not shell strings — write e.g. [systemctl, restart, ordergw]"
        )
    if isinstance(value, list):
        if not value:
            raise ValueError("command must not be empty")
        for item in value:
            if not isinstance(item, str | int) or isinstance(item, bool):
                raise ValueError(f"command argument {item!r} must be a string")
            _safe_text(str(item))
        return [str(item) for item in value]
    return value


Name = Annotated[
    str,
    BeforeValidator(_safe_text),
    Field(pattern=NAME_RE, description="lower-case name: letters, digits, '.', '_', '-'"),
    WithJsonSchema({"type": "string", "pattern": NAME_RE}),  # pydantic drops the pattern behind a BeforeValidator
]
VersionStr = Annotated[
    str,
    BeforeValidator(_version),
    Field(description="version, quoted, kept as written (PEP 440, or vendor: see version_scheme)"),
]
SpecifierStr = Annotated[
    str,
    BeforeValidator(_specifier),
    Field(description="version specifier set such as '>=4.2,<4.4' (under the version_scheme)"),
]
# The schemas describe what a person may write (the input), not the value after conversion.
Duration = Annotated[
    float,
    BeforeValidator(_duration),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": _DURATION_RE.pattern}]}),
    Field(description="seconds, or '500ms', '30s', '5m', '1h'"),
]
Sha256 = Annotated[str, BeforeValidator(_sha256), WithJsonSchema({"type": "string", "pattern": "^[0-9a-fA-F]{64}$"})]
AbsPath = Annotated[str, BeforeValidator(_abs_path), Field(description="absolute path")]
RelPath = Annotated[str, BeforeValidator(_rel_path), Field(description="relative path, no '..'")]
Argv = Annotated[list[str], BeforeValidator(_argv), Field(description="argument list; never a shell string")]
SafeText = Annotated[str, BeforeValidator(_safe_text)]
Pattern = Annotated[str, BeforeValidator(_pattern), Field(description="regular expression (Python re)")]
DateStr = Annotated[
    str,
    BeforeValidator(_date),
    WithJsonSchema({"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}),
    Field(description="a day that exists, YYYY-MM-DD"),
]
# The one market-code pattern (inventory, playbook, overrides): a 4-character ISO 10383 MIC such as XNYS or
# XCME, or an exchange_calendars name of that shape (CMES, IEPA, ARCX, BATS).  Whether the calendar
# library can answer for it is checked at validation (upgrader.windows.overrides.market_problems).
MIC_RE = r"^[A-Z][A-Z0-9]{3}$"
Mic = Annotated[str, Field(pattern=MIC_RE, description="market: a MIC (XNYS, XCME) or exchange_calendars name (CMES)")]
SYSTEMD_UNIT_RE = r"^[A-Za-z0-9][A-Za-z0-9:_.@-]{0,240}\.service$"
SystemdUnit = Annotated[
    str,
    BeforeValidator(_not_an_option),
    Field(pattern=SYSTEMD_UNIT_RE, description="a systemd service name such as ordergw.service"),
    WithJsonSchema({"type": "string", "pattern": SYSTEMD_UNIT_RE}),
]


def _rel_or_abs_path(value: Any) -> Any:
    _safe_text(value)
    _not_an_option(value)
    if not isinstance(value, str) or not value:
        raise ValueError("path must be a non-empty string")
    return value


RelOrAbsPath = Annotated[
    str, BeforeValidator(_rel_or_abs_path), Field(description="path, relative to the file that names it")
]
