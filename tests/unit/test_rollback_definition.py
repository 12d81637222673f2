"""An emergency rollback uses the service and checks a release was installed with, as the agent recorded them.

The real agent code runs on real files (STATE pointed at the test's directory).  A verified install
records its definition; a rollback back to that release with ``recorded`` uses it instead of what
the controller sent.  Attack tests: a record the agent did not write — other owner, group/other
readable, a symlink, a hard link, edited, or for a release directory swapped since — is not trusted,
and the controller's definition is used instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.unit import agent_code
from upgrader.cli.main import main

pytestmark = pytest.mark.reliability("planted or edited definition records on a host are not trusted")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def agent(tmp_path: Path) -> ModuleType:
    module = agent_code.load("upgrader_agent_definitions", tmp_path / "state")  # its /var/lib/upgrader, here
    return module


@pytest.fixture
def host(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "opt" / "app"
    for v in ("1.0", "2.0"):
        (root / "releases" / v / ".upgrader").mkdir(parents=True, mode=0o700)
    (root / "current").symlink_to("releases/1.0")
    return {"root": root, "log": tmp_path / "service.log"}


def service(host: dict[str, Path], tag: str) -> dict[str, Any]:
    """A service whose start writes ``tag``: which definition a rollback used is on disk afterwards."""
    log = host["log"]
    return {
        "start": ["sh", "-c", f"echo {tag} >> {log}"],
        "stop": ["true"],
        "status": ["true"],
        "start_timeout": 5,
        "stop_timeout": 5,
    }


def check(name: str) -> dict[str, Any]:
    return {"name": name, "kind": "command", "command": {"argv": ["true"]}, "timeout": 1, "retries": 0, "interval": 0}


def ctx(host: dict[str, Path], run: str) -> dict[str, Any]:
    return {"component": "app", "run": run, "root": str(host["root"])}


def install(agent: ModuleType, host: dict[str, Path]) -> None:
    """1.0 verified with its own definition (run R1), then 2.0 installed over it (R2)."""
    assert (
        agent.op_verify(
            ctx(host, "R1"), {"service": service(host, "one"), "checks": [check("health-1.0")], "expect_version": "1.0"}
        )["recorded"]
        is True
    )
    agent.op_switch(ctx(host, "R2"), {"version": "2.0"})
    assert (
        agent.op_verify(
            ctx(host, "R2"), {"service": service(host, "two"), "checks": [check("health-2.0")], "expect_version": "2.0"}
        )["recorded"]
        is True
    )


def rollback(agent: ModuleType, host: dict[str, Path]) -> dict[str, Any]:
    """What the controller sends when it only has the newest playbook: 2.0's service and checks."""
    sent = {
        "op": "rollback",
        "to": "1.0",
        "service": service(host, "sent"),
        "checks": [check("sent-check")],
        "recorded": True,
    }
    return agent.op_rollback(ctx(host, "RB"), sent)  # type: ignore[no-any-return]


def started(host: dict[str, Path]) -> list[str]:
    return host["log"].read_text().split() if host["log"].exists() else []


def test_rollback_uses_what_the_release_was_installed_with(
    agent: ModuleType, host: dict[str, Path], record_property: Any
) -> None:
    install(agent, host)
    out = rollback(agent, host)
    assert out["to"] == "1.0" and out["definition"]["source"] == "recorded"
    assert out["definition"]["recorded_run"] == "R1"
    assert [c["check"] for c in out["checks"]] == ["health-1.0"] and started(host) == ["one"]
    journal = [json.loads(x) for x in (Path(agent.STATE) / "app" / "journal.jsonl").read_text().splitlines()]
    seen = next(e for e in journal if e.get("event") == "rollback-definition")
    assert (seen["source"], seen["version"], seen["checks"]) == ("recorded", "1.0", ["health-1.0"])
    record_property(
        "observed",
        f"{seen['source']} definition of {out['to']} (run {out['definition']['recorded_run']}) used: "
        f"started {started(host)}, checks {seen['checks']}",
    )


def test_a_pruned_release_leaves_no_record(agent: ModuleType, host: dict[str, Path], record_property: Any) -> None:
    install(agent, host)
    shutil.rmtree(host["root"] / "releases" / "1.0")  # what op_prune does
    (host["root"] / "releases" / "3.0" / ".upgrader").mkdir(parents=True, mode=0o700)
    agent.op_switch(ctx(host, "R3"), {"version": "3.0"})
    agent.op_verify(ctx(host, "R3"), {"service": service(host, "three"), "checks": [], "expect_version": "3.0"})
    kept = sorted(json.loads((Path(agent.STATE) / "app" / "definitions.json").read_text()))
    assert kept == ["2.0", "3.0"]
    record_property("observed", f"after 1.0 was pruned and 3.0 verified, definitions.json holds {kept}")


def test_without_recorded_the_sent_definition_is_used(
    agent: ModuleType, host: dict[str, Path], record_property: Any
) -> None:
    install(agent, host)
    sent = {"op": "rollback", "to": "1.0", "service": service(host, "sent"), "checks": [check("sent-check")]}
    source = agent.op_rollback(ctx(host, "RB"), sent)["definition"]["source"]
    assert source == "sent"  # the apply engine's undo
    assert started(host) == ["sent"]
    record_property("observed", f"definition source {source!r}; the service start that ran: {started(host)}")


def _other_owner(path: Path) -> None:
    os.chown(path, 65534, 65534)


def _readable(path: Path) -> None:
    path.chmod(0o644)


def _symlinked(path: Path) -> None:
    real = path.with_name("elsewhere.json")
    shutil.copy2(path, real)
    path.unlink()
    path.symlink_to(real)


def _hard_linked(path: Path) -> None:
    os.link(path, path.with_name("second-name.json"))


def _edited(path: Path) -> None:
    data = json.loads(path.read_text())
    data["1.0"]["service"]["start"] = ["sh", "-c", "echo planted >> /dev/null"]
    path.write_text(json.dumps(data))


def _release_swapped(path: Path) -> None:
    release = path.parents[2] / "opt" / "app" / "releases" / "1.0"
    other = release.with_name(".other")
    (other / ".upgrader").mkdir(parents=True, mode=0o700)
    shutil.rmtree(release)
    other.rename(release)  # same name, another directory (made first: a freed inode number is not reused)


def _planted_from_scratch(path: Path) -> None:
    """A file written by someone else, copying a genuine entry's fields (only the owner differs)."""
    text = path.read_text()
    path.unlink()
    path.write_text(text)
    os.chown(path, 1000, 1000)
    path.chmod(0o600)


@pytest.mark.parametrize(
    "tamper", [_other_owner, _readable, _symlinked, _hard_linked, _edited, _release_swapped, _planted_from_scratch]
)
def test_a_record_the_agent_did_not_write_is_not_trusted(
    agent: ModuleType, host: dict[str, Path], tamper: Any, record_property: Any
) -> None:
    if os.geteuid() != 0:
        pytest.skip("ownership checks need root, as on a host")
    install(agent, host)
    record = Path(agent.STATE) / "app" / "definitions.json"
    tamper(record)
    trusted = agent.recorded_definition(str(host["root"]), "app", "1.0")
    assert trusted is None
    out = rollback(agent, host)
    assert out["definition"]["source"] == "sent" and started(host) == ["sent"]
    record_property(
        "observed",
        f"{tamper.__name__.strip('_').replace('_', ' ')}: record read as {trusted}; the rollback used the "
        f"{out['definition']['source']} definition, started {started(host)}",
    )


def test_a_group_writable_state_directory_is_not_trusted(
    agent: ModuleType, host: dict[str, Path], record_property: Any
) -> None:
    install(agent, host)
    (Path(agent.STATE) / "app").chmod(0o770)
    trusted = agent.recorded_definition(str(host["root"]), "app", "1.0")
    assert trusted is None
    mode = (Path(agent.STATE) / "app").stat().st_mode & 0o777
    record_property("observed", f"state dir mode {mode:o}: 1.0's record read as {trusted}")


# ---- the controller: which playbook an emergency rollback reads ----


def test_without_playbook_or_run_the_layout_is_each_hosts_own_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_property: Any
) -> None:
    from upgrader.commands import rollback as command
    from upgrader.commands import specs

    monkeypatch.chdir(REPO)  # playbooks/ is right there: it is not read for the layout
    monkeypatch.setattr(specs, "find_playbook", lambda *a: pytest.fail("read the playbooks directory"))
    args = argparse.Namespace(playbook=None, playbooks=None, state_dir=tmp_path / "state", component="ordergw")
    lay = command.layout(args)
    assert (lay.spec, lay.root, lay.source) == (None, "", "the hosts' own records")
    record_property("observed", f"layout spec {lay.spec}, root {lay.root!r}, source {lay.source!r}; no playbook read")


def test_the_newest_runs_plan_supplies_the_layout_and_nothing_else_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_property: Any
) -> None:
    from upgrader.commands import rollback as command
    from upgrader.commands import specs
    from upgrader.journal import Journal
    from upgrader.planning import planner

    state = tmp_path / "state"
    monkeypatch.chdir(REPO)
    assert (
        main(
            [
                "plan",
                "playbooks/ordergw-5.2.0.yml",
                "-i",
                "inventories/prod-na.yml",
                "--offline",
                "--out",
                str(tmp_path / "plan.json"),
            ]
        )
        == 0
    )
    older = Journal.create(state, "20260101T000000Z-ordergw-0001")
    older.write_file("plan.json", (tmp_path / "plan.json").read_text().replace('"/opt/ordergw"', '"/opt/old"'))
    newer = Journal.create(state, "20260102T000000Z-ordergw-0002")
    newer.write_file("plan.json", (tmp_path / "plan.json").read_text())
    Journal.create(state, "20260103T000000Z-riskgw-0003")  # another component's newer run: not it
    monkeypatch.setattr(specs, "find_playbook", lambda *a: pytest.fail("read the playbooks directory"))
    monkeypatch.setattr(planner, "make_plan", lambda *a, **k: pytest.fail("planned"))
    args = argparse.Namespace(playbook=None, playbooks=None, state_dir=state, component="ordergw")
    loaded = command.layout_source(args)
    assert loaded is not None
    assert loaded.path == state / "runs" / "20260102T000000Z-ordergw-0002" / "plan.json"
    assert loaded.model.component == "ordergw" and loaded.model.install.root == "/opt/ordergw"
    record_property(
        "observed",
        f"layout read from runs/{loaded.path.parent.name}/plan.json ({loaded.model.component}, root "
        f"{loaded.model.install.root}); no playbook read, nothing planned",
    )


# ---- the agent: what a rollback without --to undoes on this host ----


def test_default_target_undoes_the_run_being_rolled_back_and_a_switch_after_the_look(
    agent: ModuleType, host: dict[str, Path], record_property: Any
) -> None:
    import time

    (host["root"] / "releases" / "0.9" / ".upgrader").mkdir(parents=True, mode=0o700)
    root = str(host["root"])
    agent.op_switch(ctx(host, "R0"), {"version": "0.9"})  # 1.0 -> 0.9 by an older run, then back by R1
    agent.op_switch(ctx(host, "R1"), {"version": "1.0"})
    agent.op_switch(ctx(host, "R1"), {"version": "2.0"})  # a multi-hop run R1: 0.9 -> 1.0 -> 2.0
    whole = agent.default_target(root, "2.0", None)
    assert whole == ("0.9", None)  # the whole run, not the last hop
    named = agent.default_target(root, "2.0", {"runs": ["R1"], "seen": time.time()})
    assert named == ("0.9", None)
    target, why = agent.default_target(root, "2.0", {"runs": ["R9"], "seen": time.time()})
    assert target is None and "untouched" in why and "R1" in why
    before = time.time()
    agent.op_switch(ctx(host, "R2"), {"version": "1.0"})  # an apply racing the rollback: switched after the look
    raced = agent.default_target(root, "1.0", {"runs": ["R9"], "seen": before})
    assert raced == ("2.0", None)
    record_property(
        "observed",
        f"run R1 (0.9 to 2.0) undone to {whole[0]}, with R1 named to {named[0]}; with R9 named: {target} "
        f"({why[:100]}); switched after the look: back to {raced[0]}",
    )
