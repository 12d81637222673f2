"""The CI examples stay true: every `upgrader …` line of the GitHub workflow runs against this repo's files.

Plans in CI must never reach a host: each `upgrader plan` line must say --offline
or --facts (inventories/prod-na.yml holds addresses that are not ours).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / "examples" / "ci" / "github-actions.yml"
PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yml"))


def run_scripts(workflow: Path) -> list[str]:
    doc = yaml.safe_load(workflow.read_text(encoding="utf-8"))
    return [step["run"] for job in doc["jobs"].values() for step in job["steps"] if "run" in step]


def upgrader_lines(workflow: Path) -> list[str]:
    return [
        line.strip()
        for script in run_scripts(workflow)
        for line in script.splitlines()
        if line.strip().startswith("upgrader ")
    ]


def test_the_workflow_is_a_pull_request_workflow_on_playbooks_and_inventories() -> None:
    doc = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    trigger = doc[True] if True in doc else doc["on"]  # YAML 1.1 reads a bare `on` as true
    assert set(trigger["pull_request"]["paths"]) == {"playbooks/**", "inventories/**"}
    scripts = "\n".join(run_scripts(WORKFLOW))
    assert "gh pr comment" in scripts and "--body-file plan.md" in scripts


def test_the_workflow_validates_and_plans_offline() -> None:
    lines = upgrader_lines(WORKFLOW)
    assert any(line.startswith("upgrader validate playbooks/*.yml -i inventories/prod-na.yml") for line in lines)
    plans = [line for line in lines if line.startswith("upgrader plan ")]
    assert plans, "the workflow plans nothing"
    for line in plans:
        argv = shlex.split(line)
        assert "--offline" in argv or "--facts" in argv, f"a CI plan would contact hosts: {line}"
        assert argv[argv.index("--format") + 1] in ("markdown", "json")


def bindings(line: str) -> list[dict[str, str]]:
    """The loop variable a line uses, bound to each playbook in turn (the workflow loops over changed ones)."""
    return [{"playbook": str(p.relative_to(REPO))} for p in PLAYBOOKS] if "$playbook" in line else [{}]


def cases() -> list[tuple[str, dict[str, str]]]:
    """Lines that run on their own; `upgrader diff` reads what earlier lines wrote (the script test runs it)."""
    return [
        (line, env)
        for line in upgrader_lines(WORKFLOW)
        for env in bindings(line)
        if not line.startswith("upgrader diff ")
    ]


@pytest.mark.parametrize(("line", "env"), cases(), ids=lambda v: v.get("playbook", "") if isinstance(v, dict) else v)
def test_every_upgrader_line_of_the_workflow_runs(line: str, env: dict[str, str], tmp_path: Path) -> None:
    argv = shlex.split(line)
    if argv[1] == "plan":  # never contact a host, whatever the workflow says
        assert "--offline" in argv or "--facts" in argv, line
    for folder in ("playbooks", "inventories"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    environ = {**os.environ, **env, "PATH": path, "UPGRADER_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.run(
        ["bash", "-c", line], cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
    if "--out" in argv and argv[argv.index("--format") + 1] == "markdown":
        out = (tmp_path / argv[argv.index("--out") + 1]).read_text(encoding="utf-8")
        assert out.strip() and out.lstrip().startswith("#"), out[:200]
        assert env.get("playbook") is None or Path(env["playbook"]).stem.split("-")[0] in out


# ---- the plan step as a whole, on a pull request in a real git repository ----


def plan_step() -> str:
    doc = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return next(
        step["run"]
        for job in doc["jobs"].values()
        for step in job["steps"]
        if step.get("name", "").startswith("Plan the changed playbooks")
    )


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
        },
    ).stdout.strip()


def test_the_plan_step_posts_the_diff_against_the_base_plan_else_the_plan(tmp_path: Path) -> None:
    """An edited playbook gets `upgrader diff` of base against head; a playbook new in the PR gets its plan."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for folder in ("playbooks", "inventories"):
        shutil.copytree(REPO / folder, repo / folder)
    (repo / "playbooks" / "riskgw-2.5.0.yml").unlink()  # not on the base branch: the PR adds it
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")  # as actions/checkout leaves the base ref
    git(repo, "checkout", "-q", "-b", "pr")
    shutil.copy(REPO / "playbooks" / "riskgw-2.5.0.yml", repo / "playbooks")
    edited = repo / "playbooks" / "ordergw-5.2.0.yml"
    text = edited.read_text(encoding="utf-8")
    assert "  batch: 1\n" in text
    edited.write_text(text.replace("  batch: 1\n", "  batch: 2\n"), encoding="utf-8")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "pr")
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    environ = {**os.environ, "PATH": path, "BASE_REF": "main", "UPGRADER_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.run(
        ["bash", "-c", plan_step()], cwd=repo, env=environ, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    posted = (repo / "plan.md").read_text(encoding="utf-8")
    diff_part, plan_part = posted.split("### upgrader plan: `riskgw`")
    assert diff_part.startswith("### plan diff: `ordergw` 5.2.0 → `ordergw` 5.2.0")
    assert "- playbook rollout.batch: 1 → 2" in diff_part and "### upgrader plan: `ordergw`" not in posted
    assert "riskgw" in plan_part and "**Phases**" in plan_part
    assert not (tmp_path / "base").exists(), "the base worktree is removed"
