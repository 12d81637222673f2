"""`--limit PATTERN`: one resolver (planning/limit.py) behind plan, apply, facts, status, audit, rollback, windows.

The properties check the invariant on the result: whatever the patterns and whatever a journal
claims failed, the selection is a subset of the inventory, and a limited plan holds exactly the
selected hosts (of its component), no more, no fewer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from upgrader.cli.main import main
from upgrader.commands import targeting
from upgrader.commands.apply import verified_saved_plan
from upgrader.errors import RefusedError
from upgrader.journal import Journal
from upgrader.loading.inputs import load_inventory
from upgrader.models.plan import Limit, Plan
from upgrader.planning import limit
from upgrader.planning.planner import facts_from_inventory, iter_hosts, make_plan, runs_component
from upgrader.planning.render import to_markdown, to_text
from upgrader.vocabulary import Event

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "inventories" / "prod-na.yml"  # TEST-NET addresses: nothing may connect to them

PLAYBOOK = REPO / "playbooks" / "ordergw-5.2.0.yml"
MEMBERS = limit.members(load_inventory(INVENTORY).model)
NAMES = [m.name for m in MEMBERS]


def names(*patterns: str, failed: dict[str, set[str]] | None = None) -> list[str]:
    def lookup(run: str) -> set[str]:
        return (failed or {}).get(run, set())

    return list(limit.resolve(list(patterns), MEMBERS, lookup).hosts)


def test_each_kind_of_pattern() -> None:
    assert names("ny5-oe01") == ["ny5-oe01"]
    assert names("ny5-oe0[12]") == ["ny5-oe01", "ny5-oe02"]
    assert set(names("dc:ny5")) == {n for n in NAMES if n.startswith("ny5-")}
    assert set(names("role:risk")) == {m.name for m in MEMBERS if "risk" in m.roles}
    assert names("failed:R1", failed={"R1": {"ch2-oe01", "not-in-inventory"}}) == ["ch2-oe01"]
    assert names("dc:ny5", "dc:ch2") == names("dc:ny5,dc:ch2") == names("dc:ch2,dc:ny5")  # union, inventory order


@pytest.mark.parametrize(
    ("pattern", "named", "hint"),
    [
        ("ny9-oe01", "--limit ny9-oe01", "glob"),
        ("dc:ny9", "--limit dc:ny9", "datacenters: ch2"),
        ("role:web", "--limit role:web", "roles: md"),
        ("failed:R2", "--limit failed:R2", "upgrader show R2"),
        ("ny5-*,nothing-*", "--limit nothing-*", "glob"),
    ],
)
def test_a_pattern_matching_nothing_is_named_with_a_fix(pattern: str, named: str, hint: str) -> None:
    with pytest.raises(limit.NoMatch) as caught:
        names(pattern)
    assert str(caught.value).startswith(f"{named} matches no host in the inventory — ") and hint in str(caught.value)


@pytest.mark.parametrize("text", ["web:x", "dc:", "a b", "ny5/oe01", "failed:R*", "dc:../x", "role:$(id)"])
def test_what_is_not_a_pattern_is_a_syntax_error(text: str) -> None:
    with pytest.raises(limit.LimitSyntaxError):
        limit.parse(text)


patterns = st.lists(
    st.one_of(
        st.sampled_from(NAMES),
        st.sampled_from(["ny5-*", "*-oe0?", "tr2-*", "*"]),
        st.sampled_from(["dc:ny5", "dc:ch2", "dc:tr2", "dc:*", "role:oe", "role:md", "role:risk"]),
        st.just("failed:R"),
    ),
    min_size=1,
    max_size=5,
)
claimed = st.sets(st.one_of(st.sampled_from(NAMES), st.text("abcxyz-0123456789", min_size=1, max_size=12)))


@settings(max_examples=200, deadline=None)
@given(patterns, claimed)
def test_resolving_never_selects_a_host_outside_the_inventory(given_patterns: list[str], failed: set[str]) -> None:
    try:
        selection = limit.resolve(given_patterns, MEMBERS, lambda run: failed)
    except limit.NoMatch as exc:  # allowed only when some pattern really matches nothing
        assert "matches no host" in str(exc)
        return
    assert set(selection.hosts) <= set(NAMES)
    assert list(selection.hosts) == [n for n in NAMES if n in selection.hosts]  # inventory order, no duplicates
    if "failed:R" in given_patterns:
        assert set(NAMES) & failed <= set(selection.hosts)


INV = load_inventory(INVENTORY).model
COMPONENT_HOSTS = {n for _, n, h in iter_hosts(INV) if runs_component(INV, h, "ordergw")}


def _limited_plan(selection: limit.Selection) -> Plan:
    from upgrader.commands.inputs import load_inputs

    inputs = load_inputs(PLAYBOOK, INVENTORY)
    return make_plan(
        inputs.playbook.model,
        INV,
        facts_from_inventory(INV),
        playbook_ref=inputs.playbook_ref(),
        inventory_ref=inputs.inventory_ref(),
        limit=targeting.plan_limit(selection),
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([*NAMES, "dc:ny5", "dc:ch2", "role:md", "role:risk"]), min_size=1, max_size=4))
def test_the_limited_plan_contains_exactly_the_resolved_hosts(given_patterns: list[str]) -> None:
    selection = limit.resolve(given_patterns, MEMBERS)
    plan = _limited_plan(selection)
    listed = {h.host for h in plan.hosts} | {s.host for s in plan.skipped} | {p.host for p in plan.problems}
    assert listed == set(selection.hosts)  # hosts of other components are skipped, but listed as in the limit
    assert set(plan.facts_assumed) == set(selection.hosts) & COMPONENT_HOSTS
    assert {h for p in plan.phases for h in p.hosts} <= set(selection.hosts)
    assert plan.limit == Limit(patterns=list(selection.patterns), hosts=list(selection.hosts))


def test_a_limited_plan_says_so_and_an_unlimited_one_has_no_limit_key() -> None:
    plan = _limited_plan(limit.resolve(["dc:ch2"], MEMBERS))
    assert "LIMITED by --limit dc:ch2 to" in to_text(plan) and "LIMITED by --limit dc:ch2" in to_markdown(plan)
    assert json.loads(plan.to_json())["limit"]["patterns"] == ["dc:ch2"]
    whole = _limited_plan(limit.resolve(["*"], MEMBERS)).model_copy(update={"limit": None}).sealed()
    assert "limit" not in json.loads(whole.to_json()) and "LIMITED" not in to_text(whole)


# ---- the commands ----


@pytest.fixture
def files(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("UPGRADER_STATE_DIR", str(in_tmp / "state"))
    shutil.copy(PLAYBOOK, in_tmp / "playbook.yml")
    shutil.copy(INVENTORY, in_tmp / "inventory.yml")
    return in_tmp


def test_plan_with_a_limit_that_matches_nothing_is_one_line_exit_1(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["plan", "playbook.yml", "-i", "inventory.yml", "--offline", "--limit", "dc:ny5,dc:ny9"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "--limit dc:ny9 matches no host in inventory.yml" in err and "datacenters: ch2, ny5, tr2" in err


def test_a_bad_pattern_is_a_usage_error(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["plan", "playbook.yml", "-i", "inventory.yml", "--offline", "--limit", "web:x"])
    assert caught.value.code == 2 and "unknown prefix 'web'" in capsys.readouterr().err


def _saved(files: Path, *limits: str) -> Path:
    argv = [a for pattern in limits for a in ("--limit", pattern)]
    assert main(["plan", "playbook.yml", "-i", "inventory.yml", "--offline", "--out", "plan.json", *argv]) == 0
    return files / "plan.json"


def test_a_saved_limited_plan_is_reproduced_byte_for_byte(files: Path) -> None:
    saved = _saved(files, "dc:ch2", "ny5-oe01")
    plan, _ = verified_saved_plan(saved, Path("inventory.yml"), state=files / "state")
    assert plan.to_json() == saved.read_text()
    assert plan.limit is not None and plan.limit.patterns == ["dc:ch2", "ny5-oe01"]
    assert {h.host for h in plan.hosts} == {n for n in COMPONENT_HOSTS if n.startswith("ch2-")} | {"ny5-oe01"}


def _reseal(path: Path, edit: Any) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(Plan.from_data(data).sealed().to_json())


def _widen_hosts(data: dict[str, Any]) -> None:
    data["limit"]["hosts"].append("ny5-oe02")


def _drop_limit(data: dict[str, Any]) -> None:
    del data["limit"]


def _other_patterns(data: dict[str, Any]) -> None:
    data["limit"]["patterns"] = ["dc:ny5"]


@pytest.mark.parametrize("edit", [_widen_hosts, _drop_limit, _other_patterns])
def test_an_edited_limit_is_refused(files: Path, edit: Any) -> None:
    saved = _saved(files, "dc:ch2")
    _reseal(saved, edit)
    with pytest.raises(RefusedError, match="must not be edited"):
        verified_saved_plan(saved, Path("inventory.yml"), state=files / "state")


def test_apply_of_a_saved_plan_refuses_another_limit(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = _saved(files, "dc:ch2")
    capsys.readouterr()
    assert main(["apply", str(saved), "-i", "inventory.yml", "--yes", "--limit", "dc:ny5"]) == 1
    assert "is not the limit" in capsys.readouterr().err


def _failed_run(state: Path) -> str:
    journal = Journal.create(state, "20260101T000000Z-ordergw-0001")
    journal.record(Event.RUN_START, kind="apply", component="ordergw", hosts=["ch2-oe01", "ch2-oe02", "ny5-oe01"])
    journal.record(Event.HOST_END, host="ch2-oe01", ok=True, ops=[])
    journal.record(Event.HOST_END, host="ch2-oe02", ok=False, ops=[])
    journal.record(
        Event.RUN_END,
        status="failed-rolled-back",
        exit_code=3,
        hosts={
            "ch2-oe01": {"state": "rolled-back", "detail": "", "version": "5.0.0"},
            "ch2-oe02": {"state": "rolled-back", "detail": "", "version": "5.0.0"},
            "ny5-oe01": {"state": "rollback-failed", "detail": "", "version": None},
        },
    )
    return journal.run_id


def test_failed_run_selects_the_hosts_that_failed_in_it(files: Path) -> None:
    run = _failed_run(files / "state")
    saved = _saved(files, f"failed:{run}")
    plan = Plan.from_json(saved.read_text())
    assert plan.limit is not None and plan.limit.hosts == ["ny5-oe01", "ch2-oe02"]
    assert verified_saved_plan(saved, Path("inventory.yml"), state=files / "state")[0].to_json() == saved.read_text()


def test_failed_of_an_unknown_run_is_refused(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["plan", "playbook.yml", "-i", "inventory.yml", "--offline", "--limit", "failed:20990101T000000Z-x"])
    assert code == 1 and "no run 20990101T000000Z-x" in capsys.readouterr().err


def test_old_spellings_warn_and_mean_the_limit(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from upgrader.cli.main import build_parser

    args = build_parser(["rollback"]).parse_args(
        ["rollback", "ordergw", "-i", "inventory.yml", "--reason", "x", "--dc", "ny5", "--hosts", "ch2-oe01,ch2-oe02"]
    )
    assert args.limit == ["dc:ny5", "ch2-oe01", "ch2-oe02"]
    err = capsys.readouterr().err
    assert "--dc is deprecated and will be removed; use --limit dc:ny5" in err and "--hosts is deprecated" in err
    args = build_parser(["windows"]).parse_args(["windows", "-i", "inventory.yml", "--datacenter", "ch2"])
    assert args.limit == ["dc:ch2"] and "use --limit dc:ch2" in capsys.readouterr().err
    again = build_parser(["rollback"]).parse_args(["rollback", "c", "-i", "i", "--reason", "x"])
    assert again.limit == []  # the aliases never touch the shared default


@pytest.mark.parametrize(
    "argv",
    [
        ["plan", "playbook.yml", "--offline"],
        ["plan", "playbook.yml", "--live"],
        ["facts", "playbook.yml"],
        ["apply", "playbook.yml", "--yes"],
        ["status"],
        ["audit", "playbook.yml"],
        ["windows"],
        ["rollback", "ordergw", "--reason", "x", "--yes", "--playbook", "playbook.yml"],
    ],
)
def test_every_command_refuses_a_limit_matching_nothing_before_contacting_anyone(
    files: Path, argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from upgrader.engine import pool

    def no_pool(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a pool was made: a host would be contacted")

    monkeypatch.setattr(pool.Pool, "__init__", no_pool)
    code = main([*argv, "-i", "inventory.yml", "--limit", "ny5-oe01,role:nothing"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.splitlines()[-1].endswith(
        "--limit role:nothing matches no host in inventory.yml — roles: md, oe, risk"
    ), err


def test_windows_looks_at_the_datacenters_of_the_selected_hosts(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(
        ["windows", "-i", "inventory.yml", "--limit", "ch2-*", "--format", "json", "--now", "2026-11-28T02:00:00-05:00"]
    )
    ch2 = set(INV.datacenters["ch2"].markets)
    assert set(json.loads(capsys.readouterr().out)["markets"]) == ch2
