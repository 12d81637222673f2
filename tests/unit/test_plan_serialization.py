"""The planner's fast paths agree with the slow, obvious ones they replace.

``plan_json`` with ``json.dumps`` of ``Plan.body()`` (the saved file's tables), reading a file back
with the plan written, the hand-written ``to_dict`` methods with
``model_dump``, ``trusted`` with ``model_construct`` and validation, shared offline facts with
per-host ones: on every golden case, a larger generated inventory and hand-edited plans.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.conftest import INVENTORY, PLAYBOOKS, plan_files
from upgrader.commands.inputs import load_inputs
from upgrader.models.facts import Facts
from upgrader.models.plan import HostPlan, Phase, Plan, PlanProblem, Step, canonical_json
from upgrader.models.plan_json import FILE_ORDER, plan_json
from upgrader.models.types import trusted
from upgrader.planning.planner import facts_from_inventory, iter_hosts

CASES = sorted(p for p in (Path(__file__).parent / "planner_cases").iterdir() if p.is_dir())
INPUTS = [(pb, INVENTORY, None) for pb in PLAYBOOKS] + [
    (case / "playbook.yml", case / "inventory.yml", case / "facts.yml" if (case / "facts.yml").exists() else None)
    for case in CASES
]
IDS = [f"{pb.stem}-{inv.stem}" if inv == INVENTORY else pb.parent.name for pb, inv, _ in INPUTS]


@pytest.fixture(scope="module", params=INPUTS, ids=IDS)
def plan(request: pytest.FixtureRequest) -> Plan:
    return plan_files(*request.param)


def generated_inventory(hosts_per_dc: int) -> dict[str, Any]:
    """Like bench/plan_10k.py's: mixed roles, canaries and installed versions in three sites."""
    versions = ["5.0.0", "5.0.3", "5.1.0", "5.1.2", "5.2.0", "4.9.0"]
    datacenters = {}
    for d, dc in enumerate(["ny5", "ch2", "tr2"]):
        hosts = {}
        for i in range(hosts_per_dc):
            role = ["md", "oe", "oe", "risk"][i % 4]
            installed = {"feedhandler": "3.1.0", "riskgw": "2.4.0"}
            if role == "oe":
                installed["ordergw"] = versions[(i * 7) % len(versions)]
            hosts[f"{dc}-{role}{i:03d}"] = {
                "address": f"10.{d}.0.{i + 1}",
                "roles": [role],
                "canary": i % 13 == 0,
                "installed": installed,
            }
        datacenters[dc] = {"timezone": "America/New_York", "hosts": hosts}
    return {
        "name": "generated",
        "defaults": {"user": "deploy"},
        "roles": {"md": ["feedhandler"], "oe": ["ordergw", "riskgw", "feedhandler"], "risk": ["riskgw"]},
        "datacenters": datacenters,
    }


@pytest.fixture(scope="module")
def large_plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    inventory = tmp_path_factory.mktemp("generated") / "inventory.yml"
    inventory.write_text(yaml.safe_dump(generated_inventory(60)), encoding="utf-8")
    playbook = next(p for p in PLAYBOOKS if p.name.startswith("ordergw"))
    plan = plan_files(playbook, inventory)
    assert len(plan.hosts) > 50 and plan.problems and plan.skipped
    return plan


def file_layout(data: dict[str, Any]) -> str:
    """json.dumps's indented layout with the top level in FILE_ORDER (keys below it sorted)."""
    rank = {key: i for i, key in enumerate(FILE_ORDER)}
    members = [
        f"  {json.dumps(k, ensure_ascii=False)}: "
        + json.dumps(data[k], sort_keys=True, indent=2, ensure_ascii=False).replace("\n", "\n  ")
        for k in sorted(data, key=lambda k: (rank.get(k, len(rank)), k))
    ]
    return "{\n" + ",\n".join(members) + "\n}\n"


def assert_json_as_json_dumps(plan: Plan) -> None:
    body = plan.body()
    assert plan_json(plan) == canonical_json(body)
    assert plan.compute_hash() == "sha256:" + hashlib.sha256(canonical_json(body).encode()).hexdigest()
    assert plan.to_json() == file_layout({**body, "content_hash": plan.content_hash or plan.compute_hash()})


def test_plan_json_is_json_dumps_of_the_body(plan: Plan) -> None:
    assert_json_as_json_dumps(plan)
    assert plan.content_hash == plan.compute_hash()


def test_plan_json_of_a_larger_plan(large_plan: Plan) -> None:
    assert_json_as_json_dumps(large_plan)


def test_each_operation_and_program_is_written_once(large_plan: Plan) -> None:
    data = large_plan.body()
    ops = data["operations"]
    assert len({canonical_json(op) for op in ops}) == len(ops)
    assert len({canonical_json(p) for p in data["programs"]}) == len(data["programs"]) < len(data["hosts"])
    distinct = {canonical_json(o) for h in large_plan.hosts for s in h.steps for o in (s.op, s.undo, s.verify) if o}
    assert {canonical_json(op) for op in ops} == distinct
    for entry, host in zip(data["hosts"], large_plan.hosts, strict=True):
        assert ops[entry["undo"]] == host.undo and host.undo is not None and host.undo["op"] == "rollback"
        program = data["programs"][entry["program"]]
        assert [host.host + "/" + s["id"] for s in program] == [s.id for s in host.steps]
        assert [ops[s["op"]] for s in program] == [s.op for s in host.steps]
        # the host's undo is written once, and every live step names it
        assert {s.get("undo") for s in program if ops[s.get("undo", 0)]["op"] == "rollback"} == {entry["undo"]}


def test_plan_json_of_edited_plans(large_plan: Plan) -> None:
    """Hosts with odd names, steps of one host differing in one field: the tables still hold each exactly."""
    first, second, third, *rest = large_plan.hosts
    odd = 'a"b\\c\x00\n\u2028é😀'
    escaped = second.model_copy(
        update={
            "host": odd,
            "path": [],
            "steps": [s.model_copy(update={"id": f"{odd}/{s.id.split('/', 1)[1]}"}) for s in second.steps],
        }
    )
    changed = third.model_copy(update={"steps": [third.steps[0].model_copy(update={"undo": None})], "undo": None})
    edits = [
        ("id", "/99-start"),
        ("action", "start"),
        ("version", "9.9"),
        ("undo", {"op": "y"}),
        ("verify", {"op": "verify", "z": odd}),
    ]
    variants = [
        h.model_copy(
            update={
                "steps": [
                    h.steps[0].model_copy(update={field: h.host + str(value) if field == "id" else value}),
                    *h.steps[1:],
                ]
            }
        )
        for h, (field, value) in zip(rest, edits, strict=False)
    ]
    plan = large_plan.model_copy(
        update={
            "hosts": [first, escaped, changed, *variants, *rest[len(variants) :]],
            "phases": [*large_plan.phases, Phase(index=99, kind="canary", datacenter=None, hosts=[], bake=0.1)],
            "problems": [PlanProblem(host=None, message=odd, hint="")],
            "content_hash": "",
        }
    )
    assert_json_as_json_dumps(plan)
    assert plan.compute_hash() != large_plan.compute_hash()
    loaded = Plan.from_json(plan.to_json())
    assert [h.steps for h in loaded.hosts] == [h.steps for h in plan.hosts]
    assert loaded.to_json() == plan.to_json()


def test_a_step_id_without_its_host_cannot_be_written(large_plan: Plan) -> None:
    first = large_plan.hosts[0]
    renamed = first.model_copy(update={"host": "renamed"})  # its step ids no longer start with its name
    plan = large_plan.model_copy(update={"hosts": [renamed, *large_plan.hosts[1:]], "content_hash": ""})
    with pytest.raises(ValueError, match="a step's id is '<host>/<step>'"):
        plan.to_json()


def test_a_saved_plan_hashes_to_its_content_hash(large_plan: Plan) -> None:
    loaded = Plan.from_data(json.loads(large_plan.to_json()))
    assert loaded == large_plan
    assert loaded.compute_hash() == large_plan.content_hash
    assert loaded.to_json() == large_plan.to_json()
    assert_json_as_json_dumps(loaded)


def test_to_dict_is_model_dump(plan: Plan) -> None:
    for assumed in plan.facts_assumed.values():
        assert assumed.to_dict() == assumed.model_dump() == assumed.model_dump(mode="json")


def test_trusted_objects_are_valid_and_equal_validated_ones(plan: Plan) -> None:
    built = [
        *plan.hosts,
        *(s for h in plan.hosts for s in h.steps),
        *plan.skipped,
        *plan.problems,
        *plan.facts_assumed.values(),
    ]
    for obj in built:
        again = type(obj).model_validate(obj.model_dump())
        assert again == obj
        assert again.model_fields_set == obj.model_fields_set


def test_trusted_is_model_construct() -> None:
    values: dict[str, Any] = {
        "id": "h/01-stop-1.0",
        "action": "stop",
        "version": "1.0",
        "op": {"op": "stop", "service": {"systemd": "app.service"}},
        "undo": {"op": "rollback", "to": "0.9"},
        "verify": None,
    }
    fast, slow = trusted(Step, **values), Step.model_construct(**values)
    assert fast == slow == Step(**values)
    for attr in ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__"):
        assert getattr(fast, attr) == getattr(slow, attr)
    copied = fast.model_copy(update={"id": "h/02-start-1.0"})
    assert (copied.id, fast.id) == ("h/02-start-1.0", "h/01-stop-1.0")
    assert trusted(Step, **values).model_fields_set == set(Step.model_fields)
    with pytest.raises(ValueError, match="frozen"):
        fast.id = "other"  # type: ignore[misc]
    host = trusted(
        HostPlan,
        host="h",
        datacenter="ny5",
        address="192.0.2.1",
        from_version="0.9",
        path=["1.0"],
        phase=0,
        canary=False,
        steps=[fast],
        undo=fast.undo,
    )
    assert host == HostPlan.model_construct(**host.__dict__) == HostPlan.model_validate(host.model_dump())


def test_offline_facts_are_shared_between_hosts_with_the_same_versions() -> None:
    inventory = load_inputs(PLAYBOOKS[0], INVENTORY).inventory.model
    facts = facts_from_inventory(inventory)
    assert facts == Facts.model_validate(facts.model_dump())
    combos = {tuple(host.installed.items()) for _, _, host in iter_hosts(inventory)}
    assert len({id(h) for h in facts.hosts.values()}) == len(combos) < len(facts.hosts)
    for _, name, host in iter_hosts(inventory):
        assert {c: f.installed for c, f in facts.hosts[name].components.items()} == host.installed


def test_every_way_of_reading_a_saved_plan_reads_it_the_same(large_plan: Plan) -> None:
    """from_json, model_validate(_json) and parse_json_model (callers written before schema 4) agree."""
    from upgrader.loading.inputs import parse_json_model, read_plan_text

    text = large_plan.to_json()
    read = [
        Plan.from_json(text),
        Plan.model_validate_json(text),
        Plan.model_validate(json.loads(text)),
        parse_json_model(text, Plan, "plan.json"),
        read_plan_text(text, "plan.json"),
    ]
    assert all(plan == large_plan for plan in read)
    assert all(h.undo is not None and h.undo["op"] == "rollback" for h in read[1].hosts)
