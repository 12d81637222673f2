"""`upgrader report`: run journals → RunRecord → Markdown / HTML / Prometheus textfile.

The fixtures under data/journals/ copy the shape of what engine/apply.py,
engine/rollback.py and the agent record: a succeeding apply, an apply whose
wave host failed verify and was rolled back with its canary, and an emergency
rollback where one host did not come back.
"""

from __future__ import annotations

import itertools
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from upgrader.cli.main import main
from upgrader.reporting import load_run, load_runs, render_metrics, to_html, to_markdown, write_metrics

JOURNALS = Path(__file__).parent / "data" / "journals"
OK_RUN = "20260314T070001Z-riskgw-a1b2"
FAILED_RUN = "20260321T070004Z-ordergw-c3d4"
ROLLBACK_RUN = "20260323T143015Z-feedhandler-e5f6"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    shutil.copytree(JOURNALS, tmp_path / "state" / "runs")
    return tmp_path / "state"


# ---------------------------------------------------------------- parsing
def test_succeeding_run_is_read_as_facts(state: Path) -> None:
    r = load_run(state, OK_RUN)
    assert (r.kind, r.component, r.version, r.status, r.exit_code) == ("apply", "riskgw", "2.5.0", "succeeded", 0)
    assert r.operator == "mchen@ctl-ny5-01" and r.plan_hash and r.plan_hash.startswith("sha256:7d1c0f5e")
    assert r.seconds == pytest.approx(90.956)
    assert {h.host: (h.from_version, h.version, h.state) for h in r.hosts} == {
        h: ("2.4.0", "2.5.0", "done") for h in ("ny5-1", "ny5-2", "ch2-1", "ch2-2")
    }
    assert r.counts() == {"upgraded": 4, "failed": 0, "rolled_back": 0, "rollback_failed": 0}
    assert [(p.kind, p.datacenter) for p in r.phases] == [
        ("canary", "ny5"),
        ("canary", "ch2"),
        ("wave", "ny5"),
        ("wave", "ch2"),
    ]
    assert not r.failures and not r.rollbacks


def test_op_times_follow_from_host_begin_plus_earlier_ops(state: Path) -> None:
    r = load_run(state, OK_RUN)
    segs = [s for s in r.segments("ny5-1") if s.category not in ("stage",)]
    assert [s.op for s in segs] == ["lock", "precheck", "stop", "switch", "migrate", "start", "verify", "bake"]
    for before, after in itertools.pairwise(segs[:7]):
        assert after.start == before.end  # one agent program: each op starts when the previous ended
    assert segs[2].seconds == pytest.approx(1.2)
    assert segs[-1].seconds == pytest.approx(30.04) and segs[-1].category == "bake"


def test_failed_run_names_the_failing_check_and_what_was_rolled_back(state: Path) -> None:
    r = load_run(state, FAILED_RUN)
    assert (r.status, r.exit_code) == ("failed-rolled-back", 3)
    [failure] = r.failures
    assert (failure.host, failure.op, failure.during) == ("ny5-2", "verify", "upgrade")
    [check] = failure.failed_checks
    assert check.name == "health" and check.attempts == 21 and "HTTP 503" in (check.reason or "")
    assert "CompID mismatch" in failure.output
    assert [(b.host, b.ok, b.from_version, b.to_version) for b in r.rollbacks] == [
        ("ny5-2", True, "5.2.0", "5.1.3"),
        ("ny5-1", True, "5.2.0", "5.1.3"),
    ]
    ends = {h.host: (h.state, h.version) for h in r.hosts}
    assert ends == {
        "ny5-1": ("rolled-back", "5.1.3"),
        "ny5-2": ("rolled-back", "5.1.3"),
        "ch2-1": ("staged", "5.1.3"),
        "ch2-2": ("staged", "5.1.3"),
    }
    assert any(not s.ok and s.op == "verify" for s in r.segments("ny5-2"))
    assert [s.category for s in r.segments("ny5-1")][-1] == "rollback"


def test_rollback_run_keeps_reason_and_the_host_that_did_not_come_back(state: Path) -> None:
    r = load_run(state, ROLLBACK_RUN)
    assert (r.kind, r.status, r.exit_code) == ("rollback", "rollback-failed", 4)
    assert r.reason == "INC-4711 feed gaps on XNAS after 3.1.0"
    assert r.counts() == {"upgraded": 0, "failed": 0, "rolled_back": 3, "rollback_failed": 1}
    ends = {h.host: (h.state, h.version) for h in r.hosts}
    assert ends["ch2-2"] == ("rollback-failed", None) and ends["ny5-1"] == ("rolled-back", "3.0.2")
    [failure] = r.failures
    assert failure.host == "ch2-2" and failure.failed_checks[0].name == "feed-port"


def test_an_unfinished_run_is_reported_as_such(state: Path) -> None:
    journal = state / "runs" / FAILED_RUN / "journal.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:12]) + '\n{"torn": ')  # killed mid-run, last line torn
    r = load_run(state, FAILED_RUN)
    assert r.status == "unfinished" and r.exit_code is None and r.seconds is None
    assert "unfinished" in to_markdown(r) and "<svg" in to_html(r)


# ---------------------------------------------------------------- renderers
def test_markdown_has_hosts_durations_failures_rollbacks_and_end_versions(state: Path) -> None:
    md = to_markdown(load_run(state, FAILED_RUN))
    assert md.startswith("# ordergw 5.2.0 (apply) — failed-rolled-back")
    assert "`sha256:0b6e1f93c4d2a7785e1f0c9d8b7a6f5e4d3c2b1a09182736455463728190abcd`" in md
    assert "| duration | 58.9s |" in md and "mchen@ctl-ny5-01" in md
    assert re.search(r"\| `ny5-2` \| ny5 \| 5\.1\.3 \| \*\*5\.1\.3\*\* \| rolled-back \| 15\.2s \|", md)
    assert "## What failed" in md and "| `health` | 21 | GET http://127.0.0.1:9101/health: HTTP 503" in md
    assert "## Rolled back" in md and "| `ny5-1` | verified | 5.2.0 → 5.1.3 |" in md
    assert "| +0:43.8 | verify | verify | `ny5-2/07-verify-5.2.0` | 9.87s | **FAILED**" in md


def test_markdown_of_a_rollback_run_shows_why(state: Path) -> None:
    md = to_markdown(load_run(state, ROLLBACK_RUN))
    assert "| reason | INC-4711 feed gaps on XNAS after 3.1.0 |" in md
    assert "**unknown**" in md and "rollback-failed" in md and "3 rolled back, 1 rollback failed" in md


def test_html_is_self_contained_with_a_timeline(state: Path) -> None:
    html = to_html(load_run(state, FAILED_RUN))
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert html.count("<svg") == 1 and "timeline" in html
    for legend in ("stage", "precheck", "stop", "verify", "bake", "rollback", "failed"):
        assert f">{legend}</text>" in html
    assert "#d32f2f" in html  # the failed verify bar
    assert "FIX session OEG1 logon rejected" in html and "HTTP 503" in html
    assert "5.1.3 · rolled-back" in html and "58.9s" in html


def test_html_escapes_what_came_from_hosts(state: Path) -> None:
    journal = state / "runs" / ROLLBACK_RUN / "journal.jsonl"
    journal.write_text(journal.read_text().replace("address in use", "<img src=x onerror=alert(1)>"))
    html = to_html(load_run(state, ROLLBACK_RUN))
    assert "<img" not in html and "&lt;img src=x" in html


# ---------------------------------------------------------------- metrics
METRIC_LINE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? '
    r"-?[0-9.eE+-]+$"
)


def parse_exposition(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """With prometheus_client's own parser when installed, else a strict line check."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        for line in text.splitlines():
            assert line.startswith(("# HELP ", "# TYPE ")) or METRIC_LINE.match(line), line
        pairs = re.findall(r"^(\w+)\{(.*)\} (\S+)$", text, re.M)
        return {(n, frozenset(re.findall(r'(\w+)="([^"]*)"', lab))): float(v) for n, lab, v in pairs}
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_from_all_journals(state: Path) -> None:
    samples = parse_exposition(render_metrics(load_runs(state)))

    def value(name: str, **labels: str) -> float:
        return samples[(name, frozenset(labels.items()))]

    assert value("upgrader_run_duration_seconds", component="riskgw", kind="apply", status="succeeded") == 90.956
    assert value("upgrader_run_exit_code", component="ordergw", kind="apply") == 3
    assert value("upgrader_run_exit_code", component="feedhandler", kind="rollback") == 4
    assert value("upgrader_hosts_total", component="ordergw", outcome="rolled_back") == 2
    assert value("upgrader_hosts_total", component="feedhandler", outcome="rollback_failed") == 1
    assert value("upgrader_hosts_total", component="riskgw", outcome="upgraded") == 4
    assert value("upgrader_last_success_timestamp_seconds", component="riskgw") == 1773471692.076
    assert ("upgrader_last_success_timestamp_seconds", frozenset({("component", "ordergw")})) not in samples


def test_metrics_file_is_replaced_whole(state: Path, tmp_path: Path) -> None:
    out = tmp_path / "textfile"
    out.mkdir()
    (out / "upgrader.prom").write_text("stale\n")
    path = write_metrics(state, out)
    assert path == out / "upgrader.prom" and sorted(p.name for p in out.iterdir()) == ["upgrader.prom"]
    assert path.read_text().startswith("# HELP upgrader_run_duration_seconds")
    assert path.stat().st_mode & 0o444 == 0o444  # node_exporter runs as another user
    parse_exposition(path.read_text())


def test_metrics_with_no_runs_are_valid_and_empty(tmp_path: Path) -> None:
    assert parse_exposition(render_metrics(load_runs(tmp_path))) == {}


# ---------------------------------------------------------------- the command
def test_report_command_writes_html_markdown_and_metrics(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page, prom = tmp_path / "run.html", tmp_path / "prom"
    prom.mkdir()
    code = main(["--state-dir", str(state), "report", FAILED_RUN, "--out", str(page), "--metrics", str(prom)])
    assert code == 0 and "<svg" in page.read_text() and (prom / "upgrader.prom").is_file()
    assert main(["--state-dir", str(state), "report", ROLLBACK_RUN]) == 0
    assert capsys.readouterr().out.startswith("# emergency rollback of feedhandler")


def test_report_command_refuses_an_unknown_run(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--state-dir", str(state), "report", "20990101T000000Z-nope-0000"]) == 1
    assert "upgrader runs" in capsys.readouterr().err


# ---------------------------------------------------------------- it renders in a browser
def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA PNG with the standard library: (width, height, rows of pixel bytes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, idat = 8, dict[bytes, bytes](), b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        idat += body if kind == b"IDAT" else b""
        chunks.setdefault(kind, body)
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pred = [
                0,
                a,
                b,
                (a + b) // 2,
                a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else b if abs(p - b) <= abs(p - c) else c,
            ][kind]
            line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(b for i, b in enumerate(r) if i % bpp < 3) for r in rows]


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs /usr/bin/chromium (Debian package 'chromium', installed "
    "by the lab installer); headless screenshot of the HTML report",
)
def test_html_report_renders_in_headless_chromium(state: Path, tmp_path: Path) -> None:
    page, shot = tmp_path / "report.html", tmp_path / "report.png"
    page.write_text(to_html(load_run(state, FAILED_RUN)), encoding="utf-8")
    argv = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1400,900",
        page.as_uri(),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert shot.is_file(), proc.stderr[-2000:]
    assert shot.stat().st_size > 20_000
    width, height, rows = png_pixels(shot)
    assert (width, height) == (1400, 900)
    colours = {row[i : i + 3] for row in rows[::7] for i in range(0, len(row), 21)}
    assert len(colours) > 20, "the screenshot is (nearly) one colour"
    red = sum(
        1
        for row in rows
        for i in range(0, len(row), 3)
        if abs(row[i] - 0xD3) < 12 and abs(row[i + 1] - 0x2F) < 12 and abs(row[i + 2] - 0x2F) < 12
    )
    assert red > 200, "the failed verify bar (red) is not on screen"
