"""Property: whatever someone does to a valid playbook, upgrader answers with a plan or located problems.

Random mutations (delete or rename keys, change types, hostile strings with shell metacharacters,
newlines and bidi controls, random versions) must give either a valid plan or an ``InputError``
whose problems are each one line with a file:line:col — never another exception.
"""

from __future__ import annotations

import copy
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from upgrader.commands.inputs import load_inputs
from upgrader.errors import InputError
from upgrader.planning.planner import facts_from_inventory, make_plan
from upgrader.planning.render import to_markdown, to_text

pytestmark = pytest.mark.reliability(
    "random playbook mutations: a valid plan or a located validation error, never a traceback"
)

Record = Callable[[str, object], None]
INPUTS = Path(__file__).parent / "inputs"
BASE = yaml.safe_load((INPUTS / "playbook.yml").read_text(encoding="utf-8"))
WORK = Path(tempfile.mkdtemp(prefix="upgrader-property-"))
(WORK / "inventory.yml").write_text((INPUTS / "inventory.yml").read_text(encoding="utf-8"), encoding="utf-8")

HOSTILE = [
    "1.0; rm -rf /",
    "$(reboot)",
    "`id`",
    "a && b",
    "x | tee /etc/passwd",
    "../../etc/shadow",
    "/opt/../etc",
    "line\nbreak",
    "tab\there",
    "nul\x00byte",
    "\u202eevil\u202c",
    "\u2066iso\u2069",
    "zero\u200bwidth",
    "\ufeffbom",
    "{release}",
    "{nope}",
    "{",
    "}",
    "*",
    "~",
    "",
    " ",
    "' OR 1=1 --",
    "5.2.0\n- injected",
    "%s%n",
    "🦀",
    "3.10",
    "1e3",
    ">=5.1,<5.2",
    "=>5.1",
    "America/New_York",
    "America",
    "Fri 20:00",
    "10%",
    "0%",
    "101%",
]
VERSIONS = st.from_regex(r"\A[0-9]{1,2}(\.[0-9]{1,2}){0,3}((a|b|rc)[0-9])?(\.post[0-9])?\Z")
SCALARS = st.one_of(
    st.sampled_from(HOSTILE),
    VERSIONS,
    st.text(max_size=20),
    st.integers(-10, 100_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6,
)


def paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += paths(value, (*prefix, i))
    return found


def container(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        spots = paths(data)
        if not spots:
            break
        path = draw(st.sampled_from(spots))
        parent, last = container(data, path), path[-1]
        action = draw(st.sampled_from(["delete", "rename", "replace", "replace", "add"]))
        if action == "delete":
            del parent[last]
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=12)))] = parent.pop(last)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(VALUES)
        else:
            parent[last] = draw(VALUES)
    return data


def test_mutated_playbook_gives_a_plan_or_located_problems(record_property: Record) -> None:
    # The property runs inside the test so that its outcomes can be counted across all examples for the row.
    seen: Counter[str] = Counter()

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(mutated())
    def any_mutation(data: dict[str, Any]) -> None:
        problems = plan_or_problems(data)
        seen["refused" if problems else "planned"] += 1
        seen["problems"] += problems

    any_mutation()
    record_property(
        "observed",
        f"{seen['planned'] + seen['refused']} mutated playbooks: {seen['planned']} planned and rendered, "
        f"{seen['refused']} refused with {seen['problems']} one-line problems, each located in the playbook",
    )


def plan_or_problems(data: dict[str, Any]) -> int:
    """Load, plan and render ``data``; returns how many (located, one-line) problems refused it, 0 if it planned."""
    path = WORK / "playbook.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    try:
        inputs = load_inputs(path, WORK / "inventory.yml")
    except InputError as exc:
        assert exc.problems
        for problem in exc.problems:
            text = str(problem)
            assert "\n" not in text and "\r" not in text, text
            assert problem.location.file == str(path) and problem.location.line, text
        return len(exc.problems)
    inv = inputs.inventory.model
    plan = make_plan(
        inputs.playbook.model,
        inv,
        facts_from_inventory(inv),
        playbook_ref=inputs.playbook_ref(),
        inventory_ref=inputs.inventory_ref(),
    )
    assert plan.content_hash == plan.compute_hash()
    plan.to_json(), to_text(plan, verbose=True), to_markdown(plan)
    return 0


def test_any_text_gives_a_plan_or_located_problems(record_property: Record) -> None:
    seen: Counter[str] = Counter()

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=200))
    def any_text(text: str) -> None:
        path = WORK / "any.yml"
        path.write_text(text, encoding="utf-8")
        try:
            load_inputs(path, WORK / "inventory.yml")
        except InputError as exc:
            assert exc.problems and all(p.location.file == str(path) for p in exc.problems)
            seen["refused"] += 1
            seen["problems"] += len(exc.problems)
        else:
            seen["loaded"] += 1

    any_text()
    record_property(
        "observed",
        f"{seen['refused'] + seen['loaded']} random texts: {seen['refused']} refused with {seen['problems']} "
        f"problems, all located in the file; {seen['loaded']} loaded",
    )
