"""Fleet-consistency audit (pure core): expectations from runs, verdicts from facts, skew metrics."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from upgrader.reporting.consistency import Expected, Verdict, expected_from_runs, judge
from upgrader.reporting.skew import render_audit_metrics

EXPECTED = Expected("5.2.0", "run R2")


def record(run_id: str, code: int | None, **versions: str | None) -> SimpleNamespace:
    hosts = [SimpleNamespace(host=h, version=v) for h, v in versions.items()]
    return SimpleNamespace(run_id=run_id, component="ordergw", exit_code=code, hosts=hosts)


def test_newest_successful_run_wins_per_host_and_failed_runs_do_not_count() -> None:
    records = [
        record("R1", 0, a="5.1.0", b="5.1.0", c="5.1.0"),
        record("R2", 0, a="5.2.0", b="5.2.0"),
        record("R3", 3, a="5.3.0"),  # failed and rolled back: says nothing about what should run
        record("R4", None, b="5.3.0"),  # unfinished
        record("R5", 0, b="5.1.0"),
    ]  # a successful emergency rollback of b
    got = expected_from_runs(records, "ordergw")  # type: ignore[arg-type]
    assert got == {"a": Expected("5.2.0", "run R2"), "b": Expected("5.1.0", "run R5"), "c": Expected("5.1.0", "run R1")}
    assert expected_from_runs(records, "riskgw") == {}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ({"installed": "5.2.0", "reported_version": "5.2.0", "service": "active"}, Verdict.OK),
        ({"installed": "5.1.0", "reported_version": "5.1.0", "service": "active"}, Verdict.SKEW),
        ({"installed": "5.2.0", "reported_version": "5.1.0", "service": "active"}, Verdict.STALE_PROCESS),
        ({"installed": "5.1.0", "reported_version": "5.2.0", "service": "active"}, Verdict.STALE_PROCESS),
        ({"installed": "5.2.0", "reported_version": None, "service": "failed"}, Verdict.NOT_REPORTING),
        (
            {"installed": "5.2.0", "reported_version": None, "service": "active", "report_error": "refused"},
            Verdict.NOT_REPORTING,
        ),
        ({"error": "cannot reach 10.0.0.1:22"}, Verdict.UNREACHABLE),
        # Literal comparison: a vendor's "5.2.0_b1" is not PEP 440's normal form of anything we expect.
        ({"installed": "5.2.0", "reported_version": "5.2.0.0", "service": "active"}, Verdict.STALE_PROCESS),
    ],
)
def test_verdicts(answer: dict[str, str | None], verdict: Verdict) -> None:
    got = judge("ordergw", "h1", "ny5", EXPECTED, answer, has_version_check=True)
    assert got.verdict is verdict, got.detail
    assert got.ok is (verdict is Verdict.OK)


def test_no_expectation_and_no_version_check_are_outliers_not_passes() -> None:
    answer = {"installed": "5.2.0", "reported_version": None, "service": "active"}
    assert judge("ordergw", "h", "ny5", None, answer, True).verdict is Verdict.NO_EXPECTATION
    assert judge("ordergw", "h", "ny5", EXPECTED, answer, False).verdict is Verdict.NOT_REPORTING


def test_skew_metrics_parse_and_count_outliers() -> None:
    rows = [
        judge("ordergw", f"h{i}", "ny5", EXPECTED, {"installed": v, "reported_version": v, "service": "active"}, True)
        for i, v in enumerate(["5.2.0", "5.2.0", "5.1.0"])
    ]
    rows.append(judge("riskgw", "h9", "ch2", Expected("2.5.0", "run X"), {"error": "down"}, True))
    text = render_audit_metrics(rows, at=1_800_000_000.0)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    outliers = {s.labels["component"]: s.value for s in families["upgrader_audit_outliers"].samples}
    assert outliers == {"ordergw": 1, "riskgw": 1}
    per_verdict = {
        (s.labels["component"], s.labels["verdict"]): s.value for s in families["upgrader_audit_hosts"].samples
    }
    assert per_verdict[("ordergw", "ok")] == 2 and per_verdict[("ordergw", "skew")] == 1
    assert per_verdict[("riskgw", "unreachable")] == 1 and per_verdict[("riskgw", "ok")] == 0
    assert render_audit_metrics(rows, at=1_800_000_000.0) == text  # deterministic
