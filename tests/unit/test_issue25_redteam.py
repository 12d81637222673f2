"""A second review of issue 25's mechanisms: bypasses found after the first fixes landed, one test each.

- §1: the engine ran a testinfra module unpinned when the plan pinned no controller file at all
  (``pinned=plan.controller_files or None``): a plan that pins nothing ran whatever was on disk.
- §5: a run directory (its journal and plan.json: what `resume` runs, what `rollback` takes its
  service commands from) was used whoever wrote it; the controller lock followed a planted symlink.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import INVENTORY, REPO, plan_files

from upgrader.engine.apply import Apply
from upgrader.engine.journal import Journal
from upgrader.engine.locks import LocalLock
from upgrader.errors import RefusedError
from upgrader.transport.base import Endpoint

Record = Callable[[str, object], None]
NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="plants files as uid 65534")


# ---------------------------------------------------------------- §1 testinfra always pinned


@pytest.mark.reliability("a plan with a testinfra step but no controller files pinned (forged, or saved by an "
                         "older upgrader) is applied",
                         "the module does not run: no pytest process, the step fails naming the missing pin")
def test_a_plan_that_pins_nothing_runs_no_testinfra_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           record_property: Record) -> None:
    (tmp_path / "mod.py").write_text("import os\nos.system('id')\n\ndef test_x():\n    pass\n")
    started: list[object] = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a) or pytest.fail("pytest started"))
    failures: list[str] = []
    step = SimpleNamespace(id="h1/testinfra", op={"op": "testinfra", "file": "mod.py", "version": "5.2.0",
                                                  "timeout": 30, "name": "operator-tests"})
    engine: Any = SimpleNamespace(
        plan=SimpleNamespace(playbook=SimpleNamespace(path=str(tmp_path / "playbook.yml")), component="ordergw",
                             controller_files=[]),
        _steps=lambda host, action: [step], _set=lambda *a: None,
        pool=SimpleNamespace(endpoint=lambda host: Endpoint(host, "192.0.2.1")),
        journal=SimpleNamespace(record=lambda *a, **k: None),
        _fail=lambda host, state, detail: failures.append(detail))
    ok = Apply._testinfra(engine, "h1", "after start")
    assert not ok and started == []
    assert failures and "not pinned by the plan" in failures[0]
    record_property("observed", f"passed={ok}; {len(started)} pytest process(es); failure: {failures[0]}")


# ---------------------------------------------------------------- §5 run records


def _operator_run(state: Path, run_id: str) -> Path:
    journal = Journal.create(state, run_id)
    journal.record("run-start", kind="apply", run=run_id, component="ordergw")
    return journal.directory


@needs_root
@pytest.mark.reliability("uid 65534 plants a run directory (journal and plan.json) under runs/",
                         "every command that opens the run refuses it, naming the owner; the operator's run opens")
def test_a_run_planted_by_another_user_is_refused(tmp_path: Path, record_property: Record) -> None:
    state = tmp_path / "state"
    own = _operator_run(state, "20260101T000000Z-ordergw-0001")
    planted = state / "runs" / "20260101T000000Z-ordergw-0002"
    planted.mkdir(mode=0o700)
    (planted / "journal.jsonl").write_text((own / "journal.jsonl").read_text())
    os.chmod(planted / "journal.jsonl", 0o600)
    for path in (planted, planted / "journal.jsonl"):
        os.chown(path, NOBODY, NOBODY)
    assert Journal.open(state, own.name).directory == own  # the control: the operator's own run
    with pytest.raises(RefusedError) as refused:
        Journal.open(state, planted.name)
    assert f"owned by uid {NOBODY}" in str(refused.value)
    # A journal of another user's in the operator's own run directory, and a loosened runs/.
    os.chown(planted, 0, 0)
    with pytest.raises(RefusedError, match=f"owned by uid {NOBODY}"):
        Journal.open(state, planted.name)
    os.chmod(state / "runs", 0o777)
    with pytest.raises(RefusedError, match="writable by group or others") as loose:
        Journal.open(state, own.name)
    record_property("observed", f"planted: {refused.value}; runs/ 0777: {loose.value}")


@needs_root
@pytest.mark.reliability("uid 65534 plants the newest run's plan.json, which emergency rollback reads its service "
                         "commands and checks from", "rollback skips it (warning) and takes the operator's own run")
def test_rollback_does_not_take_its_commands_from_a_planted_plan(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                                 record_property: Record) -> None:
    from upgrader.commands.rollback import last_run_plan

    state = tmp_path / "state"
    plan = plan_files(REPO / "playbooks" / "ordergw-5.2.0.yml", INVENTORY)
    own = _operator_run(state, "20260101T000000Z-ordergw-0001")
    (own / "plan.json").write_text(plan.to_json())
    os.chmod(own / "plan.json", 0o600)
    newer = _operator_run(state, "20991231T235959Z-ordergw-ffff")
    (newer / "plan.json").write_text(plan.to_json())
    os.chown(newer / "plan.json", NOBODY, NOBODY)
    found = last_run_plan(state, "ordergw")
    assert found is not None and found.path == own / "plan.json"
    assert any("owned by uid 65534" in r.getMessage() for r in caplog.records)
    record_property("observed", f"rollback read {found.path.parent.name}; warned: "
                    f"{[r.getMessage()[:120] for r in caplog.records]}")


@pytest.mark.reliability("a symlink planted at the controller lock's name, pointing at a file of the operator's",
                         "the lock is refused; the file is not truncated")
def test_the_controller_lock_does_not_follow_a_symlink(tmp_path: Path, record_property: Record) -> None:
    state = tmp_path / "state"
    (state / "locks").mkdir(parents=True)
    victim = tmp_path / "precious"
    victim.write_text("keep me\n")
    (state / "locks" / "ordergw.lock").symlink_to(victim)
    with pytest.raises(RefusedError, match="lock file"), LocalLock(state, "ordergw", {"run": "R"}):
        pass
    assert victim.read_text() == "keep me\n"
    os.unlink(state / "locks" / "ordergw.lock")
    os.mkfifo(state / "locks" / "ordergw.lock")
    with pytest.raises(RefusedError, match="not a lock file"), LocalLock(state, "ordergw", {"run": "R"}):
        pass
    record_property("observed", f"symlink and FIFO refused; target still {victim.read_text()!r}")
