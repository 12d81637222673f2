"""Typed progress and notifications: a listener with a method per kind, enums for both, rich only in the CLI."""

from __future__ import annotations

import ast
import inspect
import io
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from upgrader.cli.progress import Progress
from upgrader.engine import progress as engine_progress
from upgrader.engine.notifier import Notifier
from upgrader.engine.progress import SAYERS, Lines, Listener, ProgressKind, replay
from upgrader.models.inventory import Notify
from upgrader.notify import _ICONS, EVENTS
from upgrader.vocabulary import NoticeKind

ROOT = Path(engine_progress.__file__).parents[1]


def test_every_progress_kind_can_be_said_again() -> None:
    assert set(SAYERS) == set(ProgressKind)


@pytest.mark.parametrize("listener", [Lines, Progress])
def test_the_writers_have_every_method_of_the_listener(listener: type) -> None:
    wanted = {n for n, _ in inspect.getmembers(Listener, inspect.isfunction) if not n.startswith("_")}
    assert wanted <= {n for n, _ in inspect.getmembers(listener, inspect.isfunction)}
    assert {n.replace("_", "-") for n in wanted} >= {str(k) for k in ProgressKind}  # one method per kind


@pytest.mark.parametrize("kind", [k for k in ProgressKind if SAYERS[k] is not None])
def test_a_replayed_event_is_said_as_its_own_kind(kind: ProgressKind) -> None:
    out = io.StringIO()
    replay(Lines("json", stream=out), str(kind), "words", "h1")
    line = json.loads(out.getvalue())
    assert (line["event"], line["message"]) == (str(kind), "words")


def test_a_kind_from_a_newer_worker_is_still_shown() -> None:
    out = io.StringIO()
    replay(Lines("plain", stream=out), "a-newer-kind", "words", "h1")
    assert out.getvalue().rstrip().endswith("h1: words")


def test_the_engine_never_imports_rich() -> None:
    for path in sorted((ROOT / "engine").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "rich" or n.startswith("rich.") for n in names), path
    probe = "import sys, upgrader.engine.apply, upgrader.engine.rollback; print('rich' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT.parent)
    assert done.stdout.strip() == "False"


def test_every_notice_kind_has_its_icon_and_a_name_outside_them_is_refused() -> None:
    assert set(_ICONS) == set(NoticeKind) == set(EVENTS)
    notify = Notifier([Notify(url_env="NOBODY_SETS_THIS")], "inv", lambda: datetime.now(UTC), send=lambda t, e: [])
    with pytest.raises(ValueError, match="finishd"):
        notify("finishd", component="c", version="1")
    notify("finished", component="c", version="1")  # a kind's name, as a string: fine
    notify.close()


def _said(pattern: str) -> dict[str, set[str]]:
    """Every literal kind the code passes to a call matching ``pattern`` (the call and its first argument
    may be on two lines), by file."""
    found: dict[str, set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        for match in re.finditer(pattern + r'\(\s*"([a-z-]+)"', path.read_text()):
            found.setdefault(str(path.relative_to(ROOT)), set()).add(match.group(1))
    return found


def test_every_notice_kind_the_code_sends_is_one_of_the_kinds() -> None:
    said = _said(r"\b(?:self\.notify|notify|tell)")
    assert said, "no notification found: the pattern no longer matches the code"
    assert {f: k - set(NoticeKind) for f, k in said.items() if k - set(NoticeKind)} == {}


def test_every_progress_kind_the_workflow_records_is_one_of_the_kinds() -> None:
    said = _said(r"self\.event")  # the Temporal workflow's live events, replayed by the client
    assert said
    assert {f: k - set(ProgressKind) for f, k in said.items() if k - set(ProgressKind)} == {}
