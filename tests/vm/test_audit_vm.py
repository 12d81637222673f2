"""`upgrader audit` on the lab: the running services' versions against the last successful run or a playbook."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lab import config, lxc
from tests.vm.upgrader_cli import Upgrader

REPO = Path(__file__).resolve().parents[2]
FEED = REPO / "playbooks" / "feedhandler-3.1.0.yml"


def audit(upgrader: Upgrader, *extra: str) -> tuple[int, list[dict[str, str]], str]:
    run = upgrader("audit", "-i", str(upgrader.inventory), "--format", "json", *extra, timeout=120)
    return run.code, json.loads(run.stdout or "[]"), run.stderr


def verdicts(rows: list[dict[str, str]], component: str) -> dict[str, str]:
    return {r["host"]: r["verdict"] for r in rows if r["component"] == component}


def on_host(host: str, script: str) -> None:
    lxc.attach(config.host(host).container, script)


@pytest.mark.reliability(
    "a host left behind (Knight Capital: 1 of 8 servers missed in a deploy)",
    "audit exits 1 naming exactly the hosts whose service is off the expected version",
)
def test_audit_names_every_outlier(upgrader, vm_hosts, tmp_path, record_property):  # type: ignore[no-untyped-def]
    assert upgrader.apply(FEED).code == 0
    (tmp_path / "prom").mkdir()  # output directories are never created (upgrader/loading/output.py)
    code, rows, err = audit(upgrader, "--metrics-dir", str(tmp_path / "prom"))
    feed = verdicts(rows, "feedhandler")
    assert code == 0 and set(feed.values()) == {"ok"} and set(feed) == set(vm_hosts), (rows, err)

    ny, ch = "ny5-2", "ch2-1"
    # ny5-2: current flipped back to 3.0.0 by hand, service not restarted -> still runs 3.1.0
    on_host(
        ny,
        "ln -sfn releases/3.0.0 /opt/feedhandler/current.new && mv -T /opt/feedhandler/current.new "
        "/opt/feedhandler/current",
    )
    # ch2-1: the service stopped
    on_host(ch, "systemctl stop feedhandler.service")
    code, rows, err = audit(upgrader, "--metrics-dir", str(tmp_path / "prom"))
    feed = verdicts(rows, "feedhandler")
    bad = {h: v for h, v in feed.items() if v != "ok"}
    assert code == 1, err
    assert bad == {ny: "stale-process", ch: "not-reporting"}, rows
    families = {
        f.name: f for f in text_string_to_metric_families((tmp_path / "prom" / "upgrader_audit.prom").read_text())
    }
    outliers = {s.labels["component"]: s.value for s in families["upgrader_audit_outliers"].samples}
    assert outliers["feedhandler"] == 2
    record_property(
        "observed", f"exit {code}; outliers {sorted(bad.items())}; metric outliers={outliers['feedhandler']:g}"
    )


def test_audit_against_a_playbook_names_skew_and_unreachable(upgrader, vm_hosts, faults):  # type: ignore[no-untyped-def]
    faults.sshd_stop("ch2-2")
    code, rows, _ = audit(upgrader, str(FEED), "--connect-timeout", "2")
    feed = verdicts(rows, "feedhandler")
    assert code == 1
    assert feed["ch2-2"] == "unreachable"
    assert {feed[h] for h in vm_hosts if h != "ch2-2"} == {"skew"}  # baseline 3.0.0, playbook says 3.1.0
    assert all(r["reported"] == "3.0.0" for r in rows if r["verdict"] == "skew")
