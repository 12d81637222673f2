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

from tests.unit.conftest import INVENTORY, REPO, plan_files
from upgrader.engine.host_actions import HostActions
from upgrader.engine.locks import LocalLock
from upgrader.errors import RefusedError
from upgrader.journal import Journal
from upgrader.transport.base import Endpoint
from upgrader.vocabulary import Event

Record = Callable[[str, object], None]
NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="plants files as uid 65534")


# ---------------------------------------------------------------- §1 testinfra always pinned


@pytest.mark.reliability(
    "a plan with a testinfra step but no controller files pinned (forged, or saved by an older upgrader) is applied",
    "the module does not run: no pytest process, the step fails naming the missing pin",
)
def test_a_plan_that_pins_nothing_runs_no_testinfra_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_property: Record
) -> None:
    (tmp_path / "mod.py").write_text("import os\nos.system('id')\n\ndef test_x():\n    pass\n")
    started: list[object] = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a) or pytest.fail("pytest started"))
    failures: list[str] = []
    step = SimpleNamespace(
        id="h1/testinfra",
        op={"op": "testinfra", "file": "mod.py", "version": "5.2.0", "timeout": 30, "name": "operator-tests"},
    )
    engine: Any = SimpleNamespace(
        plan=SimpleNamespace(
            playbook=SimpleNamespace(path=str(tmp_path / "playbook.yml")), component="ordergw", controller_files=[]
        ),
        steps=lambda host, action: [step],
        set=lambda *a: None,
        pool=SimpleNamespace(endpoint=lambda host: Endpoint(host, "192.0.2.1")),
        journal=SimpleNamespace(record=lambda *a, **k: None),
        fail=lambda host, state, detail: failures.append(detail),
    )
    ok = HostActions.testinfra(engine, "h1", "after start")
    assert not ok and started == []
    assert failures and "not pinned by the plan" in failures[0]
    record_property("observed", f"passed={ok}; {len(started)} pytest process(es); failure: {failures[0]}")


# ---------------------------------------------------------------- §5 run records


def _operator_run(state: Path, run_id: str) -> Path:
    journal = Journal.create(state, run_id)
    journal.record(Event.RUN_START, kind="apply", run=run_id, component="ordergw")
    return journal.directory


@needs_root
@pytest.mark.reliability(
    "uid 65534 plants a run directory (journal and plan.json) under runs/",
    "every command that opens the run refuses it, naming the owner; the operator's run opens",
)
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
@pytest.mark.reliability(
    "uid 65534 plants the newest run's plan.json, which emergency rollback reads its service commands and checks from",
    "rollback skips it (warning) and takes the operator's own run",
)
def test_rollback_does_not_take_its_commands_from_a_planted_plan(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, record_property: Record
) -> None:
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
    record_property(
        "observed", f"rollback read {found.path.parent.name}; warned: {[r.getMessage()[:120] for r in caplog.records]}"
    )


@pytest.mark.reliability(
    "a symlink planted at the controller lock's name, pointing at a file of the operator's",
    "the lock is refused; the file is not truncated",
)
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


# ---------------------------------------------------------------- §3 command-line and environment values


def test_every_forbidden_code_point_in_any_option_value_is_refused() -> None:
    """The whole code-point range, in an option's value (short and long) and a --opt=value."""
    from upgrader import charset
    from upgrader.cli.main import _invisible_argument

    missed = []
    for code in range(0x110000):
        ch = chr(code)
        shapes = (
            ["rollback", "ordergw", "--reason", f"INC{ch}1"],
            ["rollback", f"--to=5.1{ch}"],
            ["plan", "p.yml", "-i", f"inv{ch}.yml"],
        )
        refused = [_invisible_argument(argv) is not None for argv in shapes]
        if refused != [charset.forbidden(ch)] * 3:
            missed.append(f"U+{code:04X}")
    assert missed == []


@pytest.mark.reliability(
    "a command-line value holding an invisible character (--reason with U+2060, --python with "
    "U+00AD, --to with a newline)",
    "usage error (exit 2) naming the argument and the character, before anything connects or an agent starts",
)
def test_an_invisible_character_on_the_command_line_reaches_no_host(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], record_property: Record
) -> None:
    from upgrader.cli import main as cli
    from upgrader.commands import early

    started: list[list[str]] = []
    monkeypatch.setattr(early, "start", lambda argv, state: started.append(argv))
    inventory = str(INVENTORY)
    cases = [
        ["rollback", "ordergw", "-i", inventory, "--reason", "INC\u20601"],
        ["rollback", "ordergw", "-i", inventory, "--reason", "x", "--python", "/usr/bin/python3\u00ad"],
        ["rollback", "ordergw", "-i", inventory, "--reason", "x", "--to=5.1.0\n"],
    ]
    codes = [cli.main(argv) for argv in cases]
    err = capsys.readouterr().err
    assert codes == [2, 2, 2] and started == []
    for named in (
        "(--reason) contains the invisible or control character U+2060",
        "(--python) contains the invisible or control character U+00AD",
        "(--to) contains the invisible or control character U+000A",
    ):
        assert named in err
    record_property("observed", f"exit codes {codes}; {len(started)} early start(s); {err.strip().splitlines()}")


def test_an_operator_name_with_an_invisible_character_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from upgrader.journal import operator

    monkeypatch.setenv("UPGRADER_OPERATOR", "alice\u202eecila")
    with pytest.raises(RefusedError, match=r"\$UPGRADER_OPERATOR.*U\+202E"):
        operator()
    monkeypatch.setenv("UPGRADER_OPERATOR", "alice")
    assert operator().startswith("alice@")


# ---------------------------------------------------------------- §1 every systemctl argv the agent runs


def _agent_systemctl_argvs(unit: str) -> list[str]:
    """Every ``run(["systemctl", ...])`` the agent's source holds, with ``unit`` for the unit expression."""
    import ast
    import shlex

    from upgrader.agent import build

    tree = ast.parse(build.program())  # the program a host runs: every module of the agent
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.List)
            and node.elts
            and isinstance(node.elts[0], ast.Constant)
            and node.elts[0].value == "systemctl"
        ):
            words = [e.value if isinstance(e, ast.Constant) else unit for e in node.elts]
            found.append(shlex.join(str(w) for w in words))
    return sorted(set(found))


def test_every_systemctl_command_the_agent_runs_is_in_the_plan() -> None:
    """The agent also kills a unit that hangs on stop, resets a failed start and asks for the unit's control
    group: each of those argv is in the text and the Markdown plan, not only start/stop/is-active."""
    from upgrader.planning.render import to_markdown, to_text

    plan = plan_files(REPO / "playbooks" / "ordergw-5.2.0.yml", INVENTORY)
    unit = plan.spec.service.systemd
    assert unit
    argvs = _agent_systemctl_argvs(unit)
    assert len(argvs) >= 6  # stop, start, is-active, kill, reset-failed, show
    text, markdown = to_text(plan), to_markdown(plan)
    assert [a for a in argvs if a not in text] == []
    assert [a for a in argvs if a not in markdown] == []
    # What a precheck may run instead (the host's record of how its running release was verified) is said.
    assert "with those recorded checks instead" in text and "with those recorded checks instead" in markdown


# ---------------------------------------------------------------- §7 what the control worker writes


@pytest.mark.reliability(
    "a workflow of anyone's in the namespace schedules the control worker's 'record' activity "
    "with a plan reference naming a path ('../../x') or a plan its store does not hold, or with records for "
    "another execution's (or a local) run",
    "refused: nothing is written outside the run's directory, nor into a run that is not the calling execution's own",
)
def test_the_control_worker_writes_only_its_own_run_files(tmp_path: Path, record_property: Record) -> None:
    import asyncio
    import dataclasses
    import gzip
    import hashlib

    from temporalio.exceptions import ApplicationError
    from temporalio.testing import ActivityEnvironment

    from upgrader.loading.inputs import load_inventory
    from upgrader.temporal.control import Control
    from upgrader.temporal.messages import PlanRef, Records

    state = tmp_path / "state"
    store = tmp_path / "artifacts"
    store.mkdir()
    control = Control(state, load_inventory(INVENTORY), store=store)

    def as_execution(execution: str, batch: Records) -> object:
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, workflow_run_id=execution)
        return asyncio.run(env.run(control.record, batch))

    def start(seq: int, execution: str) -> dict[str, object]:
        return {
            "seq": seq,
            "at": "2026-12-04T00:00:00.000+00:00",
            "event": "run-start",
            "kind": "apply",
            "execution": execution,
        }

    target = tmp_path / "planted.txt"
    (store / "plans").mkdir(mode=0o700)
    planted = gzip.compress(b"echo owned\n", mtime=0)  # not the plan its name says
    (store / "plans" / f"{'0' * 64}.json.gz").write_bytes(planted)
    gz_sha = hashlib.sha256(planted).hexdigest()  # the file named as it is: only the plan's own hash is wrong
    pathname = PlanRef("../../planted.txt", 11, len(planted), 1, gz_sha)
    unstored = PlanRef("1" * 64, 11, len(planted), 1, gz_sha)
    misnamed = PlanRef("0" * 64, 11, len(planted), 1, gz_sha)
    refusals = []
    for ref in (pathname, unstored, misnamed):
        with pytest.raises(ApplicationError) as refused:
            as_execution("E1", Records("20260101T000000Z-ordergw-0001", [start(1, "E1")], ref))
        refusals.append(refused.value.type)
    assert not target.exists() and not (state / "runs" / "20260101T000000Z-ordergw-0001" / "journal.jsonl").exists()
    run = "20260101T000000Z-ordergw-0002"
    assert as_execution("E1", Records(run, [start(1, "E1")])) == 1  # the control
    journal = state / "runs" / run / "journal.jsonl"
    before = journal.read_text()
    forged = {"seq": 2, "at": "2026-12-04T00:00:01.000+00:00", "event": "run-end", "status": "succeeded"}
    with pytest.raises(ValueError, match="not this workflow execution"):
        as_execution("E2", Records(run, [forged]))
    local = _operator_run(state, "20260101T000000Z-ordergw-0003")  # a local run: no execution
    with pytest.raises(ValueError, match="not this workflow execution"):
        as_execution("E2", Records(local.name, [forged]))
    assert journal.read_text() == before and "run-end" not in (local / "journal.jsonl").read_text()
    assert as_execution("E1", Records(run, [forged])) == 1  # its own execution goes on writing
    record_property(
        "observed",
        f"a plan named '../../planted.txt', one not stored and one not what its name says refused "
        f"({refusals}; {target.name} exists: {target.exists()}); another "
        "execution's and a local run's journals unchanged; the run's own execution wrote its record",
    )


@pytest.mark.reliability(
    "a symlink planted at $STATE/debug.log, pointing at a file of the operator's, when an internal error is logged",
    "the traceback is not appended through the link; the target is unchanged",
)
def test_the_debug_log_does_not_follow_a_symlink(tmp_path: Path, record_property: Record) -> None:
    from upgrader.cli.main import _write_debug_log

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    victim = tmp_path / "bashrc"
    victim.write_text("# mine\n")
    (state / "debug.log").symlink_to(victim)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        where = _write_debug_log(state)
    assert victim.read_text() == "# mine\n"
    record_property("observed", f"debug log written to {where}; target {victim.read_text()!r}")


@needs_root
def test_a_planted_run_is_neither_listed_nor_an_estimate_nor_a_refusal(tmp_path: Path) -> None:
    """`upgrader runs` and the window guard's duration estimate skip a run uid 65534 planted (they do not
    stop at it either: a planted directory must not turn into a refusal of every apply)."""
    from upgrader.engine.admission import past_host_seconds
    from upgrader.journal import list_runs

    state = tmp_path / "state"
    own = _operator_run(state, "20260101T000000Z-ordergw-0001")
    planted = state / "runs" / "20260101T000000Z-ordergw-0002"
    planted.mkdir(mode=0o700)
    (planted / "journal.jsonl").write_text((own / "journal.jsonl").read_text())
    os.chown(planted / "journal.jsonl", NOBODY, NOBODY)
    assert [r.run_id for r in list_runs(state)] == [own.name]
    assert past_host_seconds(state, "ordergw") is None


# ---------------------------------------------------------------- §6 nothing checked is not success


@pytest.mark.reliability(
    "audit where no selected host runs the playbook's component (--limit names only market-data hosts)",
    "exit 1 'nothing was audited'; no '0 of 0 host(s) agree', no host contacted",
)
def test_an_audit_of_nothing_is_not_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], record_property: Record
) -> None:
    from upgrader.cli.main import main
    from upgrader.engine import facts as host_facts

    asked: list[object] = []
    monkeypatch.setattr(host_facts, "gather", lambda *a, **k: asked.append(k) or pytest.fail("a host was asked"))
    code = main(
        [
            "--state-dir",
            str(tmp_path / "state"),
            "audit",
            "-i",
            str(INVENTORY),
            str(REPO / "playbooks" / "ordergw-5.2.0.yml"),
            "--limit",
            "ny5-md01",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1 and "nothing was audited" in err and "0 of 0" not in out and asked == []
    record_property("observed", f"exit {code}; {err.strip().splitlines()[-1]}")


def test_a_state_directory_reached_through_a_link_still_holds_trusted_runs(tmp_path: Path) -> None:
    """The operator's state directory may be a symlink to where the space is: its runs open as before."""
    real = tmp_path / "data" / "upgrader"
    real.parent.mkdir()
    own = _operator_run(real, "20260101T000000Z-ordergw-0001")
    link = tmp_path / "state"
    link.symlink_to(real)
    assert Journal.open(link, own.name).directory == link / "runs" / own.name
