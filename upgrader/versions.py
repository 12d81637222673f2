"""Version schemes: how a playbook's versions are accepted, ordered and compared (``version_scheme``).

Two rules hold for every scheme:

- **Equality is on the literal string**, as the playbook declares it and as the host reports it (the
  release directory's name, the service's answer).  ``5.2.0_b123`` is never turned into ``5.2.0b123``
  and then compared with a host that says ``5.2.0_b123``.
- **Ordering uses the scheme**, and is a total order consistent with that equality: two different
  literals are never "equal"; where the scheme ranks them alike (PEP 440's ``5.2`` and ``5.2.0``) the
  literal text breaks the tie.

``pep440`` (the default): PEP 440 versions and specifiers, pre-releases included in ranges.

``vendor``: ``RELEASE[SEP SUFFIX]``: numeric release parts (``7.17.2``) compared as numbers, then an
optional build or hotfix suffix after ``-``, ``_``, ``.``, ``+`` or ``~`` (``-b123``, ``_b123``,
``-hotfix1``) that sorts **after** the plain release: ``5.2.0 < 5.2.0-b123 < 5.2.0-hotfix1 < 5.2.1``.
Suffixes compare run by run, numbers as numbers (``b9 < b10``), letters case-insensitively; the
separator does not rank.  There are no pre-releases in this scheme: use ``pep440`` for ``rc1``.
Its specifiers are comma-separated clauses of ``==``, ``!=`` (on the literal), ``<``, ``<=``, ``>``,
``>=`` (by rank: ``>=5.2.0-b1`` also matches ``5.2.0_b1``, which ranks the same).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

Scheme = Literal["pep440", "vendor"]
SCHEMES: tuple[Scheme, ...] = ("pep440", "vendor")

_VENDOR_RE = re.compile(
    r"(?P<release>[0-9]+(?:\.[0-9]+)*)(?:[-_.+~]?(?P<suffix>[A-Za-z0-9]+(?:[-_.+~][A-Za-z0-9]+)*))?"
)
_RUN_RE = re.compile(r"[0-9]+|[A-Za-z]+")
_CLAUSE_RE = re.compile(r"\s*(==|!=|<=|>=|<|>)\s*(\S+?)\s*")


@dataclass(frozen=True, eq=False)
class SchemeVersion:
    """A version as written, with its scheme's rank; ``str()`` is the literal, ``==`` compares literals."""

    literal: str
    scheme: Scheme
    rank: Any  # pep440: packaging Version; vendor: (release, has suffix, suffix runs)

    def key(self) -> tuple[Any, ...]:
        return (self.scheme, self.rank, self.literal)

    def __str__(self) -> str:
        return self.literal

    def __repr__(self) -> str:
        return f"<{self.scheme} {self.literal}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SchemeVersion) and other.literal == self.literal and other.scheme == self.scheme

    def __hash__(self) -> int:
        return hash((self.scheme, self.literal))

    def __lt__(self, other: SchemeVersion) -> bool:
        return self.key() < other.key()

    def __le__(self, other: SchemeVersion) -> bool:
        return self == other or self < other

    def __gt__(self, other: SchemeVersion) -> bool:
        return other < self

    def __ge__(self, other: SchemeVersion) -> bool:
        return self == other or other < self


@functools.lru_cache(maxsize=8192)
def parse(text: str, scheme: Scheme = "pep440") -> SchemeVersion:
    """``text`` under ``scheme``; ValueError (message — fix) if it is not one of its versions."""
    if scheme == "vendor":
        m = _VENDOR_RE.fullmatch(text)
        if m is None:
            raise ValueError(
                f"{text!r} is not a vendor version — write numeric release parts, then an optional "
                "build or hotfix suffix, e.g. 7.17.2-b123, 5.2.0_b123, 5.2.0-hotfix1"
            )
        suffix = m.group("suffix") or ""
        runs = tuple((0, int(r), "") if r.isdigit() else (1, 0, r.lower()) for r in _RUN_RE.findall(suffix))
        release = tuple(int(p) for p in m.group("release").split("."))
        return SchemeVersion(text, scheme, (release, bool(suffix), runs))
    try:
        return SchemeVersion(text, "pep440", Version(text))
    except InvalidVersion:
        raise ValueError(
            f"{text!r} is not a PEP 440 version — use one such as 5.2.0 or 5.2.0rc1, or set "
            "version_scheme: vendor for versions such as 5.2.0_b123 or 5.2.0-hotfix1"
        ) from None


def valid_in_some_scheme(text: str) -> bool:
    return any(_parses(text, s) for s in SCHEMES)


def _parses(text: str, scheme: Scheme) -> bool:
    try:
        parse(text, scheme)
    except ValueError:
        return False
    return True


def sort_key(text: str, scheme: Scheme) -> tuple[Any, ...]:
    """For sorting literals a host reported (they may predate the scheme): its versions first, by rank."""
    try:
        return (0, parse(text, scheme).key())
    except ValueError:
        return (1, text)


@dataclass(frozen=True)
class Spec:
    """A specifier set under a scheme (``upgrade_from``, ``requires``)."""

    text: str
    scheme: Scheme
    clauses: tuple[tuple[str, SchemeVersion], ...] = ()

    def contains(self, version: SchemeVersion) -> bool:
        if self.scheme == "pep440":
            if version.scheme != "pep440":
                return False
            return _pep440_set(self.text).contains(version.rank, prereleases=True)
        if version.scheme != "vendor":
            return False
        return all(_holds(op, version, bound) for op, bound in self.clauses)

    def __str__(self) -> str:
        return self.text


def _holds(op: str, v: SchemeVersion, bound: SchemeVersion) -> bool:
    # Ranks, not keys: a bound ranks like the literal it names whatever separator it was written with.
    if op == "==":
        return v == bound
    if op == "!=":
        return v != bound
    below, above = bool(v.rank < bound.rank), bool(bound.rank < v.rank)
    return {"<": below, ">": above, "<=": not above, ">=": not below}[op]


@functools.lru_cache(maxsize=1024)
def _pep440_set(text: str) -> SpecifierSet:
    return SpecifierSet(text)


@functools.lru_cache(maxsize=1024)
def spec(text: str, scheme: Scheme = "pep440") -> Spec:
    """``text`` as a specifier set under ``scheme``; ValueError (message — fix) if it is not one."""
    if scheme == "pep440":
        try:
            if not str(_pep440_set(text)):
                raise InvalidSpecifier(text)
        except InvalidSpecifier:
            raise ValueError(f"invalid version specifier {text!r} — use a form such as '>=4.2,<4.4'") from None
        return Spec(text, scheme)
    clauses = []
    for part in text.split(","):
        m = _CLAUSE_RE.fullmatch(part)
        if m is None:
            raise ValueError(
                f"{part.strip()!r} in {text!r} is not a vendor specifier clause — write clauses such as "
                "'>=5.1.0,<5.2.0-hotfix1' (==, !=, <, <=, >, >=; no wildcards or ~=)"
            )
        clauses.append((m.group(1), parse(m.group(2), "vendor")))
    return Spec(text, scheme, tuple(clauses))


def valid_spec_in_some_scheme(text: str) -> bool:
    for scheme in SCHEMES:
        try:
            spec(text, scheme)
        except ValueError:
            continue
        return True
    return False
