"""Mutated inputs of every kind never crash upgrader, never run away: exit 0, 1 or 2, and no traceback.

Hypothesis starts from the valid files (tests/unit/inputs, inventories/overrides.yml, a saved plan,
a recorded journal) and breaks them the way damage and hostility do: flipped bytes, truncation,
duplicated or dropped lines, and inserted aliases, tags, huge numbers, deep nesting and odd text.
Each mutant runs through the real CLI (upgrader.cli.main.main) in a worker process whose address
space is capped with RLIMIT_AS (1 GiB) and whose every case has a 30 s alarm: a case that runs
away in memory ends in MemoryError, one that runs away in time in the alarm's exception, and both
are exit 70, which fails the test.  One worker serves many cases, so hundreds of examples fit in
the CI budget (measured: 10-20 ms a case, 300 per kind in 25-35 s); a worker that dies is reported
with the case that killed it.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HERE = Path(__file__).parent
REPO = HERE.parents[1]
RUN = "20260321T070004Z-ordergw-c3d4"
MEMORY = 1 << 30  # RLIMIT_AS of the worker
CASE_SECONDS = 30  # generous: a loaded CI machine must not fail a case that is merely slow
EXAMPLES = int(os.environ.get("UPGRADER_MUTATION_EXAMPLES", "300"))  # per kind: 1,800 cases, ~10 ms each

WORKER = textwrap.dedent(f"""
    import contextlib, io, json, os, resource, signal, sys
    resource.setrlimit(resource.RLIMIT_AS, ({MEMORY}, {MEMORY}))

    def alarm(signum, frame):
        raise TimeoutError("the case took more than {CASE_SECONDS} s")

    signal.signal(signal.SIGALRM, alarm)
    from upgrader.cli.main import main
    answer = os.fdopen(os.dup(1), "w")
    for line in sys.stdin:
        case = json.loads(line)
        os.chdir(case["cwd"])
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            signal.alarm({CASE_SECONDS})
            try:
                code = main(case["argv"])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
            finally:
                signal.alarm(0)
        answer.write(json.dumps({{"code": code, "out": out.getvalue()[-2000:], "err": err.getvalue()[-4000:]}}) + "\\n")
        answer.flush()
""")


class Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )

    def run(self, argv: list[str], cwd: Path) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd)}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], CASE_SECONDS + 20)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"the worker died or hung on {argv}: {err[-2000:]}")
        return json.loads(line)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    w.close()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, worker: Worker) -> Path:
    """The valid files, a plan saved from them, and a recorded run in a state directory."""
    root = tmp_path_factory.mktemp("mutation")
    for name in ("playbook.yml", "inventory.yml", "facts.yml"):
        shutil.copy(HERE / "inputs" / name, root / name)
    shutil.copy(REPO / "inventories" / "overrides.yml", root / "overrides.yml")
    (root / "facts.yml").write_text(FACTS, encoding="utf-8")  # every host, so the unmutated plan has no problem
    result = worker.run(
        [
            "--state-dir",
            str(root / "state"),
            "plan",
            "playbook.yml",
            "-i",
            "inventory.yml",
            "--offline",
            "--out",
            "plan.json",
        ],
        root,
    )
    assert result["code"] == 0, result
    shutil.copytree(HERE / "data" / "journals" / RUN, root / "state" / "runs" / RUN)
    return root


FACTS = """\
inventory: test-inventory
hosts:
  ny5-oe01: {free_disk_mb: 5000, components: {ordergw: {installed: "5.1.0", staged: ["5.0.0"], service: active}}}
  ny5-oe02: {free_disk_mb: 5000, components: {ordergw: {installed: "5.1.0", service: active}}}
  ch2-oe01: {reachable: true, components: {ordergw: {installed: "5.0.0", reported_version: "5.0.0"}}}
"""

# kind -> (file it mutates, command lines that read it; {f} is the mutated file)
KINDS: dict[str, tuple[str, list[list[str]]]] = {
    "playbook": ("playbook.yml", [["plan", "{f}", "-i", "inventory.yml", "--offline"]]),
    "inventory": ("inventory.yml", [["plan", "playbook.yml", "-i", "{f}", "--offline"]]),
    "facts": ("facts.yml", [["plan", "playbook.yml", "-i", "inventory.yml", "--facts", "{f}"]]),
    "overrides": (
        "overrides.yml",
        [
            [
                "windows",
                "playbook.yml",
                "-i",
                "inventory.yml",
                "--overrides",
                "{f}",
                "--now",
                "2026-12-26T12:00:00+00:00",
                "--days",
                "2",
            ]
        ],
    ),
    "plan": ("plan.json", [["diff", "plan.json", "{f}"]]),
    "journal": (
        f"state/runs/{RUN}/journal.jsonl",
        [
            ["show", RUN],
            ["report", RUN],
            ["report", RUN, "--format", "html"],
            ["show", RUN, "--format", "json"],
            ["runs"],
        ],
    ),
}

INSERTS = [
    "x: &a [1, 2, 3, 4, 5, 6, 7, 8]\ny: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nz: [*b, *b, *b, *b, *b, *b, *b, *b]\n",
    "k: !custom {a: 1}\n",
    "k: !!python/name:os.system\n",
    "- !!binary aGk=\n",
    "k: *undefined\n",
    "9" * 5000,
    "1e999",
    ".inf",
    ".nan",
    "010",
    "0x1F",
    "1:30",
    "2026-02-30",
    "-rf",
    "--help",
    "[" * 3000,
    "{" * 3000,
    '{"a": ' * 200 + "1" + "}" * 200,
    "NaN",
    "Infinity",
    "null",
    "[]",
    "{}",
    "\x00",
    "\ufeff",
    "\u202e",
    "\udcff",
    "é",
    "\t",
    "\r\n",
    "&",
    "*",
    "<<: {}",
    "---\n",
    "...\n",
]


def _mutate(data: bytes, draw: st.DrawFn) -> bytes:
    for _ in range(draw(st.integers(1, 3))):
        lines = data.splitlines(keepends=True) or [b""]
        kind = draw(st.sampled_from(["flip", "truncate", "duplicate", "drop", "swap", "insert", "replace-value"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        line = draw(st.integers(0, len(lines) - 1))
        if kind == "flip" and data:
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
        elif kind == "truncate":
            data = data[:at]
        elif kind == "duplicate":
            data = b"".join(lines[: line + 1] + lines[line : line + 1] * draw(st.integers(1, 50)) + lines[line + 1 :])
        elif kind == "drop":
            data = b"".join(lines[:line] + lines[line + 1 :])
        elif kind == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[line], lines[other] = lines[other], lines[line]
            data = b"".join(lines)
        else:
            text = draw(st.sampled_from(INSERTS)).encode("utf-8", "surrogatepass")
            if kind == "insert":
                data = b"".join(lines[:line]) + text + b"\n" + b"".join(lines[line:])
            else:  # put the text where a value was: after the first ': ' of the line
                head, sep, _ = lines[line].partition(b": ")
                lines[line] = head + sep + text + b"\n" if sep else text + b"\n"
                data = b"".join(lines)
    return data


@st.composite
def mutants(draw: st.DrawFn, original: bytes) -> bytes:
    return _mutate(original, draw)


@pytest.mark.reliability(
    "mutated playbooks, inventories, facts, overrides, plans and journals (hypothesis)",
    "exit 0, 1 or 2; never a traceback, exit 70, 1 GiB or 30 s",
)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_mutated_input_never_crashes(kind: str, work: Path, worker: Worker, record_property: Any) -> None:
    name, commands = KINDS[kind]
    target = work / name
    original = target.read_bytes()
    seen: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=mutants(original), which=st.integers(0, len(commands) - 1))
    def check(data: bytes, which: int) -> None:
        target.write_bytes(data)
        argv = ["--state-dir", str(work / "state"), *(a.replace("{f}", name) for a in commands[which])]
        result = worker.run(argv, work)
        text = result["out"] + result["err"]
        assert result["code"] in (0, 1, 2), (data[:300], result)
        assert "Traceback" not in text and "internal error" not in text, (data[:300], result)
        seen[result["code"]] = seen.get(result["code"], 0) + 1

    try:
        check()
    finally:
        target.write_bytes(original)
    record_property("observed", ", ".join(f"exit {code}: {n}" for code, n in sorted(seen.items())))
    assert seen.get(1, 0) > 0, "no mutant was refused: the mutations do not reach the checks"
    assert seen.get(0, 0) > 0, "no mutant was accepted: the command fails even on valid input"


# ---- journal records built field by field: whatever read() lets through, every reader takes ----

EVENTS = [
    "run-start",
    "run-end",
    "stage-begin",
    "stage-end",
    "phase-begin",
    "phase-end",
    "host-begin",
    "host-end",
    "bake-begin",
    "bake-end",
    "rollback-begin",
    "rollback-end",
    "halt",
    "hold",
    "lock-break",
    "recover",
    "resume",
    "artifact-refused",
    "locks",
]
HOSTS = st.sampled_from(["ny5-1", "ch2-1", "x"])
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELD = st.sampled_from(
    [
        "kind",
        "component",
        "operator",
        "status",
        "exit_code",
        "ok",
        "error",
        "ops",
        "hosts",
        "phase",
        "failed",
        "plan_hash",
        "version",
        "to",
        "reason",
        "stderr",
        "unreachable",
        "argv",
        "seconds",
        "datacenter",
        "steps",
        "break_lock",
        "path",
        "run",
        "seq",
    ]
)
OP = st.fixed_dictionaries(
    {"op": st.sampled_from(["stage", "switch", "verify", "rollback", "bake"])},
    optional={
        "seconds": st.floats(0, 1e4) | JSON,
        "ok": st.booleans() | JSON,
        "error": JSON,
        "checks": st.lists(
            st.dictionaries(st.sampled_from(["check", "ok", "reason", "attempts"]), JSON, max_size=4), max_size=2
        )
        | JSON,
        "steps": JSON,
        "current": JSON,
        "to": JSON,
        "from": JSON,
        "step": JSON,
        "stdout": JSON,
    },
)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "event": draw(st.sampled_from(EVENTS)),
        "at": draw(
            st.sampled_from(
                ["2026-03-21T07:00:05+00:00", "2026-03-21T07:00:09.5+00:00", "2026-03-21T07:01:00", "yesterday"]
            )
        ),
    }
    if draw(st.booleans()):
        entry["host"] = draw(HOSTS | JSON)
    for name in draw(st.lists(FIELD, max_size=5)):
        entry[name] = draw(JSON)
    if draw(st.booleans()):
        entry["ops"] = draw(st.lists(OP, max_size=3))
    if draw(st.booleans()):
        entry["hosts"] = draw(
            st.lists(HOSTS, max_size=3)
            | st.dictionaries(
                HOSTS, st.dictionaries(st.sampled_from(["state", "detail", "version"]), JSON, max_size=3), max_size=2
            )
        )
    return entry


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(entries=st.lists(records(), min_size=1, max_size=8))
def test_every_record_read_lets_through_is_readable_by_every_reader(
    entries: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """read() refuses a record (InputError naming the line) or every reader handles it: report (markdown,
    HTML, metrics), show, and the summaries runs and admission use."""
    from upgrader import journal
    from upgrader.commands.show import describe
    from upgrader.errors import InputError
    from upgrader.reporting import parse_run, render_metrics, to_html, to_markdown

    path = tmp_path_factory.mktemp("records") / "journal.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    try:
        read = list(journal.read(path))
    except InputError as exc:
        assert str(exc).startswith(f"{path}:") and len(exc.problems) == 1
        return
    record = parse_run("run", read)
    to_markdown(record)
    to_html(record)
    render_metrics([record])
    for entry in read:
        describe(entry)
    journal.summarize(path.parent)
