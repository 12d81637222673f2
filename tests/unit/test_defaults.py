"""upgrader/defaults.py is the one definition of a run's defaults: no module keeps a copy of its own."""

from __future__ import annotations

import ast
from pathlib import Path

from upgrader import defaults
from upgrader.transport.base import DEFAULTS

ROOT = Path(defaults.__file__).parent
NAMES = {n for n in vars(defaults) if n.isupper()}
# The agent defines its own: it runs alone on a host and cannot import the controller's modules.
AGENT = ROOT / "agent"


def _literal_assignments(path: Path) -> list[tuple[str, int]]:
    """Module-level ``NAME = <number>`` (or timedelta(<number>)) for a name defaults.py defines."""
    found = []
    for node in ast.parse(path.read_text()).body:
        if not isinstance(node, ast.Assign):
            continue
        value = node.value
        literal = isinstance(value, ast.Constant) or (
            isinstance(value, ast.Call) and all(isinstance(a.value, ast.Constant) for a in value.keywords)
        )
        for target in node.targets:
            if isinstance(target, ast.Name) and target.id in NAMES and literal:
                found.append((target.id, node.lineno))
    return found


def test_no_module_keeps_its_own_copy_of_a_default() -> None:
    copies = [
        f"{path.relative_to(ROOT.parent)}:{line} {name}"
        for path in sorted(ROOT.rglob("*.py"))
        if AGENT not in path.parents and path != ROOT / "defaults.py"
        for name, line in _literal_assignments(path)
    ]
    assert copies == []


def test_the_agents_takeover_wait_is_the_controllers() -> None:
    # The controller sends its own wait with every takeover; the agent's default only matters to an old
    # controller, and it must not differ from ours.
    from upgrader.agent import protocol as agent  # the agent's constants, shared with the controller

    assert agent.TAKEOVER_WAIT == defaults.TAKEOVER_WAIT
    assert defaults.TAKEOVER_WAIT <= agent.MAX_TAKEOVER_WAIT


def test_an_activity_outlasts_the_call_inside_it() -> None:
    # The activity opens the host's session first (one handshake), then makes the call with its margin:
    # the call must time out first, so the workflow hears "timed out", not "worker lost".
    assert defaults.SAFETY_MARGIN + DEFAULTS.handshake <= defaults.ACTIVITY_MARGIN
    assert defaults.BEAT < defaults.ACTIVITY_HEARTBEAT


def test_the_workflow_has_no_margin_of_its_own() -> None:
    source = "".join((ROOT / "temporal" / name).read_text() for name in ("workflow.py", "interpreter.py"))
    assert "+ 600" not in source
    assert "ACTIVITY_MARGIN" in source
