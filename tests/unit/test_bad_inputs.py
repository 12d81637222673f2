"""Every class of malformed input, through the real CLI: one clean line naming the spot and the fix.

The cases are data: tests/unit/bad_inputs/*.yml, one table per area (YAML, values, plans, journals,
run ids, output paths).  Each case names the files it starts from, the change it makes, the command
line, the exit code and a pattern the error must match.  Every case runs ``upgrader.cli.main.main``
in an empty directory with its own state directory and asserts: the exit code; the pattern; exactly
one error line (unless the case says otherwise) holding ``file:line`` where it names one; no
"internal error" or traceback; and that no file in the directory (state and --out paths included)
was created, changed or removed.

File specs (under ``files:``): ``base`` copies a valid file (``inputs/…``, ``data/…``, ``plan.json``
or ``repo:PATH``), ``replace`` is a list of [old, new] pairs applied to it (each must occur once),
``append`` adds text, ``text`` gives the content outright, ``python`` is an expression giving str or
bytes (big or binary content), ``size`` makes a sparse file of that many bytes, ``symlink`` a link,
``fifo`` a named pipe, ``dir`` a directory.  ``runs`` copies recorded runs from data/journals into
the state directory first.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from upgrader.cli.main import main
from upgrader.engine import admission

HERE = Path(__file__).parent
REPO = HERE.parents[1]
CASES_DIR = HERE / "bad_inputs"
JOURNALS = HERE / "data" / "journals"
RUN = "20260321T070004Z-ordergw-c3d4"  # the run whose journal the journal cases break (``journal`` in python:)
BASE_INPUTS = ("playbook.yml", "inventory.yml", "facts.yml")
SECONDS = 30.0  # no case may take longer (an alias bomb or a 10 GB file would take far more)


def _cases() -> list[Any]:
    out = []
    for table in sorted(CASES_DIR.glob("*.yml")):
        for name, case in yaml.safe_load(table.read_text(encoding="utf-8")).items():
            out.append(pytest.param(case, id=f"{table.stem}: {name}"))
    return out


@pytest.fixture(scope="session")
def valid_plan(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A plan saved by `upgrader plan --out` from the valid inputs (the base of the plan cases)."""
    work = tmp_path_factory.mktemp("plan")
    for name in BASE_INPUTS:
        shutil.copy(HERE / "inputs" / name, work / name)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        assert (
            main(
                [
                    "--state-dir",
                    str(work / "state"),
                    "plan",
                    "playbook.yml",
                    "-i",
                    "inventory.yml",
                    "--offline",
                    "--out",
                    "plan.json",
                ]
            )
            == 0
        )
    finally:
        os.chdir(cwd)
    return (work / "plan.json").read_text(encoding="utf-8")


def _base(spec: str, plan: str) -> str:
    if spec == "plan.json":
        return plan
    if spec.startswith("repo:"):
        return (REPO / spec.removeprefix("repo:")).read_text(encoding="utf-8")
    return (HERE / spec).read_text(encoding="utf-8")


def _make(path: Path, spec: dict[str, Any], plan: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_file():
        path.unlink()
    if "symlink" in spec:
        path.symlink_to(spec["symlink"])
    elif spec.get("fifo"):
        os.mkfifo(path)
    elif spec.get("dir"):
        path.mkdir()
    elif "size" in spec:
        with path.open("wb") as fh:
            fh.truncate(int(spec["size"]))
    elif "python" in spec:
        names = {
            "plan": plan,
            "playbook": (HERE / "inputs" / "playbook.yml").read_text(encoding="utf-8"),
            "journal": (JOURNALS / RUN / "journal.jsonl").read_text(encoding="utf-8"),
            "with_line": _with_line,
        }
        data = eval(spec["python"], {"__builtins__": {"range": range, "len": len}}, names)  # the test's own table
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    else:
        text = spec["text"] if "text" in spec else _base(spec["base"], plan)
        for old, new in spec.get("replace", []):
            assert text.count(old) == 1, f"{path.name}: {old!r} must occur once"
            text = text.replace(old, new)
        path.write_text(text + spec.get("append", ""), encoding="utf-8")


def _with_line(number: int, new: str | bytes) -> bytes:
    """The journal of RUN with line ``number`` (1-based) replaced."""
    lines = (JOURNALS / RUN / "journal.jsonl").read_bytes().splitlines()
    lines[number - 1] = new if isinstance(new, bytes) else new.encode()
    return b"\n".join(lines) + b"\n"


def _snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            seen[str(path.relative_to(root))] = (oct(info.st_mode), info.st_size, info.st_mtime_ns)
    return seen


@pytest.mark.reliability
@pytest.mark.parametrize("case", _cases())
def test_bad_input_is_refused_cleanly(
    case: dict[str, Any],
    valid_plan: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    record_property: Any,
) -> None:
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "state"
    monkeypatch.setenv("UPGRADER_STATE_DIR", str(state))
    for name in BASE_INPUTS:
        shutil.copy(HERE / "inputs" / name, tmp_path / name)
    (tmp_path / "plan.json").write_text(valid_plan, encoding="utf-8")
    for run in case.get("runs", []):
        shutil.copytree(JOURNALS / run, state / "runs" / run)
    for name, spec in (case.get("files") or {}).items():
        _make(tmp_path / name, spec, valid_plan)
    record_property("scenario", f"bad input: {case['scenario']}")
    record_property("expected", f"exit {case['exit']}, one line matching `{case['message']}`, nothing written")
    before = _snapshot(tmp_path)

    started = time.monotonic()
    try:
        code = main([str(a) for a in case["argv"]])
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    record_property("observed", f"exit {code}: {lines[0][:160] if lines else '(no message)'}")

    assert code == case["exit"], err
    assert "internal error" not in err and "Traceback" not in err + out
    assert re.search(case["message"], err), err
    errors = [line for line in lines if line.startswith("error") or (case["exit"] == 2 and " error: " in line)]
    assert len(errors) == case.get("lines", 1), err
    if "where" in case:  # file:line[:col], in the line that matched
        assert any(case["where"] in line and re.search(case["message"], line) for line in errors), err
    if "stdout" in case:
        assert re.search(case["stdout"], out), out
    assert elapsed < SECONDS
    assert _snapshot(tmp_path) == before, "the command wrote, changed or removed a file"


# ---- readers that are not commands of their own ----


def test_past_durations_skip_a_damaged_journal(tmp_path: Path) -> None:
    """Admission's estimate reads past journals: a damaged one is left out, the others still count."""
    for run in ("20260321T070004Z-ordergw-c3d4",):
        shutil.copytree(JOURNALS / run, tmp_path / "runs" / run)
    good = admission.past_host_seconds(tmp_path, "ordergw")
    assert good is not None
    bad = tmp_path / "runs" / "20260322T070004Z-ordergw-ffff"
    shutil.copytree(JOURNALS / "20260321T070004Z-ordergw-c3d4", bad)
    lines = (bad / "journal.jsonl").read_text().splitlines()
    lines[3] = '{"event": "host-end", "at": "2026-03-22T07:00:00+00:00", "host": "x", "ok": true, "ops": 5}'
    (bad / "journal.jsonl").write_text("\n".join(lines) + "\n")
    assert admission.past_host_seconds(tmp_path, "ordergw") == good


@pytest.mark.reliability(
    "report --metrics with one damaged journal among the runs",
    "exit 0: the report and upgrader.prom are written from the other runs",
)
def test_metrics_leave_out_a_damaged_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], record_property: Any
) -> None:
    state = tmp_path / "state"
    for run in ("20260314T070001Z-riskgw-a1b2", RUN):
        shutil.copytree(JOURNALS / run, state / "runs" / run)
    (state / "runs" / RUN / "journal.jsonl").write_bytes(_with_line(4, "[1]"))
    (tmp_path / "prom").mkdir()
    code = main(
        ["--state-dir", str(state), "report", "20260314T070001Z-riskgw-a1b2", "--metrics", str(tmp_path / "prom")]
    )
    err = capsys.readouterr().err
    metrics = (tmp_path / "prom" / "upgrader.prom").read_text()
    record_property(
        "observed", f"exit {code}; upgrader.prom names riskgw: {'riskgw' in metrics}, ordergw: {'ordergw' in metrics}"
    )
    assert code == 0 and "Traceback" not in err
    assert 'component="riskgw"' in metrics and 'component="ordergw"' not in metrics
