"""Saved plans on the lab: applied exactly, refused when tampered with or stale; reports from real journals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.vm.hoststate import component, host_journal
from tests.vm.upgrader_cli import Upgrader, playbook, write

REPO = Path(__file__).resolve().parents[2]
FEED = REPO / "playbooks" / "feedhandler-3.1.0.yml"


def save_plan(upgrader: Upgrader, pb: Path, out: Path) -> Path:
    run = upgrader("plan", str(pb), "-i", str(upgrader.inventory), "--live", "--out", str(out))
    assert run.code == 0, run.output
    return out


def test_a_saved_plan_is_applied_exactly(upgrader, vm_host, vm_hosts, tmp_path):  # type: ignore[no-untyped-def]
    plan = save_plan(upgrader, FEED, tmp_path / "plan.json")
    run = upgrader.apply(plan)
    assert run.code == 0, run.output
    start = upgrader.journal()[0]
    assert start["plan_hash"] == json.loads(plan.read_text())["content_hash"]
    assert {component(vm_host(h), "feedhandler").current for h in vm_hosts} == {"3.1.0"}


@pytest.mark.reliability(
    "a reviewed plan edited by hand",
    "refused, naming the edited field (planned again from its inputs); nothing changed; exit 1",
)
def test_a_tampered_plan_is_refused(upgrader, vm_host, vm_hosts, tmp_path, record_property):  # type: ignore[no-untyped-def]
    plan = save_plan(upgrader, FEED, tmp_path / "plan.json")
    data = json.loads(plan.read_text())
    data["spec"]["canary"]["bake"] = 0.0  # skip the bake: exactly what a review must catch
    plan.write_text(json.dumps(data, indent=2, sort_keys=True))
    run = upgrader.apply(plan)
    assert run.code == 1 and "spec.canary.bake: plan says 0.0, playbook gives" in run.stderr, run.output
    assert not upgrader.runs()
    versions = {component(vm_host(h), "feedhandler").current for h in vm_hosts}
    assert versions == {"3.0.0"}
    named = run.stderr[run.stderr.index("spec.canary.bake") :].splitlines()[0]
    record_property(
        "observed",
        f"exit {run.code}: {named[:110]}; {len(upgrader.runs())} run(s) started; hosts on {sorted(map(str, versions))}",
    )


@pytest.mark.reliability(
    "hosts drifted between plan and apply (version changed, staged release gained)",
    "refused per host, naming what changed; nothing changed; exit 1",
)
def test_a_stale_plan_is_refused_per_host(upgrader, vm_host, vm_hosts, tmp_path, record_property):  # type: ignore[no-untyped-def]
    assert upgrader.apply(FEED).code == 0
    newer = write(tmp_path / "pb.yml", playbook("feedhandler", "3.2.0", canary={"bake": "1s"}))
    plan = save_plan(upgrader, newer, tmp_path / "plan.json")
    back = upgrader(
        "rollback", "feedhandler", "-i", str(upgrader.inventory), "--reason", "drift", "--yes", "--hosts", "ny5-2"
    )
    assert back.code == 0
    vm_host("ch2-1").run("sudo mkdir -p /opt/feedhandler/releases/9.9.9/.upgrader")
    vm_host("ch2-1").run(
        "sudo sh -c %s", 'echo \'{"sha256": "x"}\' > /opt/feedhandler/releases/9.9.9/.upgrader/release.json'
    )
    runs_before = len(upgrader.runs())
    run = upgrader.apply(plan)
    assert run.code == 1, run.output
    assert "ny5-2: now on 3.0.0, not 3.1.0 as planned" in run.stderr
    assert "ch2-1: gained staged release(s) 9.9.9" in run.stderr
    assert len(upgrader.runs()) == runs_before
    untouched = component(vm_host("ny5-1"), "feedhandler").current
    assert untouched == "3.1.0"
    stray = [
        r
        for r in host_journal(vm_host("ny5-1"), "feedhandler")
        if r.get("op") == "stage" and r.get("run") not in {p.name for p in upgrader.runs()}
    ]
    assert not stray
    named = [x.strip() for x in run.stderr.splitlines() if "ny5-2:" in x or "ch2-1:" in x]
    record_property(
        "observed",
        f"exit {run.code}: {'; '.join(named)[:150]}; {len(upgrader.runs()) - runs_before} new run(s); "
        f"ny5-1 still {untouched}, {len(stray)} stray stage(s)",
    )


def test_postmortem_report_from_a_real_failing_run(upgrader, tmp_path):  # type: ignore[no-untyped-def]
    run = upgrader.apply(write(tmp_path / "pb.yml", playbook("ordergw", "5.1.1+crash", canary={"bake": "6s"})))
    assert run.code == 3
    run_id = upgrader.runs()[-1].name
    md = upgrader("report", run_id, "--format", "markdown")
    assert md.code == 0, md.output
    for expected in ("ny5-1", "5.1.1+crash", "rolled", "5.0.0", "pytest"):
        assert expected in md.stdout, expected
    html = upgrader("report", run_id, "--out", str(tmp_path / "r.html"))
    assert html.code == 0 and "<svg" in (tmp_path / "r.html").read_text()
    (tmp_path / "prom").mkdir()  # upgrader never creates a directory an option names (loading/output.py)
    metrics = upgrader("report", run_id, "--metrics", str(tmp_path / "prom"))
    assert metrics.code == 0
    prom = (tmp_path / "prom" / "upgrader.prom").read_text()
    assert 'upgrader_run_exit_code{component="ordergw",kind="apply"} 3' in prom
