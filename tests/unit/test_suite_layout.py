"""The suite's own layout: what would stop pytest from collecting it, and fixtures copied between files."""

from __future__ import annotations

import ast
import copy
from collections import Counter, defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_file_names_are_unique_across_the_suite() -> None:
    """Two test_x.py in different folders are confusing in reports and in `-k`: keep basenames unique."""
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []


def _is_fixture(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if (isinstance(target, ast.Attribute) and target.attr == "fixture") or (
            isinstance(target, ast.Name) and target.id == "fixture"
        ):
            return True
    return False


class _Plain(ast.NodeTransformer):
    """Drops what does not change what a fixture does: annotations and docstrings."""

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        node.returns = None
        if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
            node.body = node.body[1:] or [ast.Pass()]
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is None:
            return ast.Pass()
        return ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno)


def fixture_copies(root: Path) -> list[str]:
    """Fixtures defined with the same name and the same body (annotations and docstrings aside) in two files."""
    where: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _is_fixture(node):
                plain = _Plain().visit(copy.deepcopy(node))
                what = ast.dump(plain.args) + ast.dump(ast.Module(body=plain.body, type_ignores=[]))
                where[(node.name, what)].append(f"{path.relative_to(root)}:{node.lineno}")
    return [
        f"fixture {name!r} is defined alike in {', '.join(places)}: keep one, in the conftest.py above them"
        for (name, _), places in sorted(where.items())
        if len({p.split(":")[0] for p in places}) > 1
    ]


def test_no_fixture_is_copied_between_files() -> None:
    assert fixture_copies(TESTS) == []


def test_a_copied_fixture_is_found(tmp_path: Path) -> None:
    """The check itself: the same fixture in two files (annotated differently) is named; a different one is not."""
    one = "import pytest\n\n@pytest.fixture\ndef upgrader(tmp_path):\n    '''One.'''\n    x: int = 1\n    return x\n"
    two = "import pytest\n\n@pytest.fixture()\ndef upgrader(tmp_path: object) -> int:\n    x = 1\n    return x\n"
    other = "import pytest\n\n@pytest.fixture\ndef upgrader(tmp_path):\n    return 2\n"
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "test_one.py").write_text(one)
    (tmp_path / "test_two.py").write_text(two)
    (tmp_path / "test_other.py").write_text(other)
    assert fixture_copies(tmp_path) == [
        "fixture 'upgrader' is defined alike in a/test_one.py:4, test_two.py:4: keep one, in the conftest.py above them"
    ]
