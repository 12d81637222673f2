"""The loader's fast paths give what the slow ones gave (issue 27 §4: planning 10,000 hosts in 2 s).

``yamlfile.scalar_value`` builds str, null, decimal int, bool and plain float scalars itself instead of
through PyYAML's SafeConstructor; ``yamlfile.parse`` leaves the position table to the first
``Document.locate``.  Hypothesis holds both to the slow paths: the same value of the same type (or the
same error), and for mutated inventories the same problems at the same file:line:col.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from upgrader.errors import InputError
from upgrader.loading import yamlfile
from upgrader.loading.inputs import Loaded, inventory_problems
from upgrader.loading.validate import validate
from upgrader.models.inventory import Inventory

HERE = Path(__file__).parent
INVENTORY = (HERE / "inputs" / "inventory.yml").read_text(encoding="utf-8")
TAGS = sorted(yamlfile._SCALAR_TAGS)
# Characters the spellings of YAML 1.1 numbers, booleans and dates are made of, and some that are not.
SPELLING = st.text(alphabet="0123456789+-._:eExXbBoOabcdfnlsuTtYyNn ~", max_size=12)
WORDS = st.sampled_from(
    ["yes", "No", "TRUE", "off", "On", "null", "Null", "~", "", ".inf", "-.Inf", ".NaN", "2026-02-30"]
)


# Spellings at the edges of the fast paths: signed zeros, huge integers (Python's 4,300-digit limit),
# other bases, underscores, sexagesimal, case.
EDGES = ["-0.0", "-0", "+0", "+.5", "-.5", "1E5", "1e+5", "0.", "0b11", "0x_1F", "017", "1_000", "1:30", "1:30.5",
         "-" + "9" * 5000, "9" * 4301, "TRUE", "oFF", "1e999", "-1e999"]  # fmt: skip


def _slow(node: yaml.ScalarNode) -> Any:
    """What the loader computed before: a fresh SafeConstructor, through construct_object."""
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _outcome(fn: Any, node: yaml.ScalarNode) -> tuple[str, Any]:
    try:
        value = fn(node)
    except Exception as exc:  # the same error, or the same value
        return ("error", (type(exc), str(exc)))
    if isinstance(value, float):  # nan != nan; -0.0 == 0.0: compare what is stored
        return ("float", "nan" if math.isnan(value) else value.hex())
    return (type(value).__name__, value)


@settings(max_examples=600, deadline=None)
@given(text=st.one_of(SPELLING, WORDS, st.integers().map(str), st.floats().map(repr)), tag=st.sampled_from(TAGS))
def test_explicitly_tagged_scalars_are_built_as_safe_constructor_builds_them(text: str, tag: str) -> None:
    node = yaml.ScalarNode(tag, text)
    assert _outcome(yamlfile.scalar_value, node) == _outcome(_slow, node)


@settings(max_examples=600, deadline=None)
@given(text=st.one_of(SPELLING, WORDS, st.integers().map(str), st.floats().map(repr)))
def test_plain_scalars_resolve_and_build_as_before(text: str) -> None:
    """Through the real composer: the tag YAML resolves for the spelling, then the value."""
    try:
        node = yamlfile.compose(f"v: {text}\n")
    except yaml.YAMLError:
        return  # not a scalar the composer takes; nothing to build
    assert isinstance(node, yaml.MappingNode)
    value = node.value[0][1]
    if isinstance(value, yaml.ScalarNode) and value.tag in yamlfile._SCALAR_TAGS:
        assert _outcome(yamlfile.scalar_value, value) == _outcome(_slow, value)


@pytest.mark.parametrize("text", EDGES)
def test_spellings_at_the_edges_are_built_as_before(text: str) -> None:
    for tag in TAGS:
        scalar = yaml.ScalarNode(tag, text)
        assert _outcome(yamlfile.scalar_value, scalar) == _outcome(_slow, scalar), tag
    node = yamlfile.compose(f"v: {text}\n")
    assert isinstance(node, yaml.MappingNode)
    plain = node.value[0][1]
    assert _outcome(yamlfile.scalar_value, plain) == _outcome(_slow, plain)


def test_scalars_built_are_not_kept() -> None:
    """SafeConstructor.construct_object remembers every node it built: the loader's module-level
    constructor held every node of every file parsed, for the life of the process."""
    yamlfile.parse(INVENTORY, Path("inventory.yml"))
    yamlfile.parse(INVENTORY.replace("5.0.0", "5.0.1"), Path("inventory.yml"))
    assert yamlfile._constructor.constructed_objects == {}


# --- the position table, recorded late ---------------------------------------------------------------

LINES = INVENTORY.splitlines()
# Replacement values: wrong types, bad versions and addresses, unknown roles, odd keys, controls.
VALUES = st.sampled_from(
    ["5.0.0", '"5.0.0"', "5.0", "5", "3.10", "yes", "~", "[]", "{}", "[oe, nope]", "[ordergw]", "{ordergw: 5}",
     "{ordergw: '5.x'}", '"a b"', "-1", "70000", "192.0.2.15", "198.51.100.14", "ny5-oe01", "Europe/Nowhere",
     "nope", "x" * 80, "010", ".inf", '"\\u2060x"', "2026-02-30", "!!str 5"]
)  # fmt: skip
KEYS = st.sampled_from(["address", "adress", "roles", "installed", "port", "user", "canary", "hosts", "timezone"])


@st.composite
def mutated_inventories(draw: st.DrawFn) -> str:
    """The test inventory with a few lines broken: a value replaced, a key renamed, a line dropped or doubled."""
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(1, len(lines) - 1))
        line = lines[i]
        rest = line.lstrip()
        indent = line[: len(line) - len(rest)]
        how = draw(st.sampled_from(["value", "value", "value", "key", "key", "drop", "double"]))
        if how == "value" and ":" in rest:
            key = rest.split(":", 1)[0]
            lines[i] = f"{indent}{key}: {draw(VALUES)}"
        elif how == "key" and ":" in rest:
            lines[i] = f"{indent}{draw(KEYS)}:{rest.split(':', 1)[1]}"
        elif how == "drop":
            del lines[i]
        else:
            lines.insert(i, line)
    return "\n".join(lines) + "\n"


def _report(text: str, marks: bool) -> tuple[str, list[str]]:
    """What loading ``text`` as an inventory reports, and at which stage: every problem as file:line:col: message."""
    path = Path("inventory.yml")
    try:
        doc = yamlfile.parse(text, path, marks=marks)
    except InputError as exc:  # refused while building: positions from the nodes, no table
        return ("parse", [str(p) for p in exc.problems])
    if not isinstance(doc.data, dict):
        return ("top level", [str(doc.locate(()))])
    try:
        loaded = Loaded(validate(doc, Inventory), path, "", doc)
    except InputError as exc:
        return ("model", [str(p) for p in exc.problems])
    problems = [str(p) for p in inventory_problems(loaded)]
    return ("inventory" if problems else "valid", problems)


@pytest.mark.reliability("mutated inventory, positions recorded late", "the same problems at the same file:line:col")
def test_late_positions_name_the_same_lines(record_property: Any) -> None:
    seen: Counter[str] = Counter()
    lines: set[str] = set()

    @settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(text=mutated_inventories())
    def check(text: str) -> None:
        eager, late = _report(text, marks=True), _report(text, marks=False)
        assert late == eager
        seen[eager[0]] += 1
        lines.update(p.split(" ", 1)[0] for p in eager[1])

    check()
    record_property(
        "observed",
        f"{sum(seen.values())} mutants, the same report late as eager for each "
        f"({', '.join(f'{n} {k}' for k, n in sorted(seen.items()))}; {len(lines)} distinct file:line:col named)",
    )


@settings(max_examples=100, deadline=None)
@given(text=mutated_inventories())
def test_the_table_recorded_late_is_the_eager_table(text: str) -> None:
    try:
        eager = yamlfile.parse(text, Path("i.yml"), marks=True)
    except InputError:
        return  # refused while building: no table is ever read
    late = yamlfile.parse(text, Path("i.yml"))
    assert not late.marked and not late.marks
    late.locate(())
    assert (late.marks, late.key_marks) == (eager.marks, eager.key_marks)


def test_a_valid_inventory_is_loaded_without_recording_positions(tmp_path: Path) -> None:
    """The speed-up holds only while nothing on the way of a valid file asks for a position."""
    from upgrader.loading.inputs import load_inventory

    path = tmp_path / "inventory.yml"
    group = "groups:\n  pair:\n    hosts: [ny5-oe01, ny5-oe02]\n"
    path.write_text(INVENTORY.replace("  risk: [riskgw]\n", "  risk: [riskgw]\n" + group), encoding="utf-8")
    loaded = load_inventory(path)
    assert not loaded.doc.marked and not loaded.doc.marks
    assert str(loaded.at("datacenters", "ny5", "hosts", "ny5-oe02", "address")) == f"{path}:20:18"
    assert loaded.doc.marked
