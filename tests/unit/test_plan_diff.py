"""`upgrader diff`: what a reviewer needs to see between two plans."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def plan(tmp: Path, name: str, playbook: Path, *extra: str) -> Path:
    out = tmp / name
    subprocess.run(
        [
            sys.executable,
            "-m",
            "upgrader",
            "plan",
            str(playbook),
            "-i",
            str(REPO / "inventories" / "prod-na.yml"),
            "--offline",
            "--out",
            str(out),
            *extra,
        ],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    return out


def test_identical_plans_show_no_difference(tmp_path: Path) -> None:
    pb = REPO / "playbooks" / "ordergw-5.2.0.yml"
    a, b = plan(tmp_path, "a.json", pb), plan(tmp_path, "b.json", pb)
    run = subprocess.run([sys.executable, "-m", "upgrader", "diff", str(a), str(b)], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "no difference"


def test_policy_and_phase_changes_are_listed(tmp_path: Path) -> None:
    pb = REPO / "playbooks" / "ordergw-5.2.0.yml"
    a = plan(tmp_path, "a.json", pb)
    edited = tmp_path / "ordergw-5.2.0.yml"
    edited.write_text(pb.read_text().replace("  batch: 1\n", "  batch: 50%\n").replace("bake: 8s", "bake: 10m"))
    b = plan(tmp_path, "b.json", edited)
    run = subprocess.run(
        [sys.executable, "-m", "upgrader", "diff", str(a), str(b), "--format", "markdown"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert "- playbook canary.bake: 8.0 → 600.0" in run.stdout
    assert "- playbook rollout.batch: 1 → '50%'" in run.stdout
    assert "- phases: 9 → 7" in run.stdout  # ny5: canary + 2 waves of 2,1; ch2 and tr2: canary + 1
    assert "- host ny5-oe03: phase 3 → 2" in run.stdout
    assert "- host ny5-oe04: phase 4 → 3" in run.stdout


def test_exit_zero_keeps_exit_1_for_an_unreadable_plan_only(tmp_path: Path) -> None:
    """What a CI script needs: a difference is not a failure, a broken plan still is."""
    pb = REPO / "playbooks" / "ordergw-5.2.0.yml"
    whole, limited = plan(tmp_path, "a.json", pb), plan(tmp_path, "b.json", pb, "--limit", "dc:ch2")

    def diff(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "upgrader", "diff", *args], capture_output=True, text=True)

    differ = diff(str(whole), str(limited), "--format", "markdown")
    assert differ.returncode == 1 and "- limit: every host → dc:ch2" in differ.stdout
    assert differ.stdout.startswith("### plan diff: `ordergw` 5.2.0 → `ordergw` 5.2.0")
    assert diff(str(whole), str(limited), "--exit-zero").returncode == 0
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert diff(str(whole), str(broken), "--exit-zero").returncode == 1
