"""Fleet consistency (pure): does every host run the version it should, as its service reports it?

A desk that missed one server out of eight in a manual deploy lost about $460M in 45 minutes: the
eighth host ran the old code while the other seven ran the new.  `upgrader audit` asks each host's
service for its version (the playbook's `version` check), compares it with what the fleet should run
and names every host that differs, including those that cannot be asked at all.

What a host "should run" comes from playbooks the operator names, or else from the host itself: the
release it records as the last it verified (an install's verify or a rollback's, by any controller).
A host without such a record falls back to this controller's journal: the version the newest
*successful* run of the component left on that host.  The journal never overrules a host's record.
Versions are compared as the strings the service reports, never normalised (``5.2.0_b123`` is not ``5.2.0b123``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from upgrader.reporting.model import RunRecord


class Verdict(StrEnum):
    """One host's audit result; everything but OK makes `audit` exit 1."""

    OK = "ok"
    SKEW = "skew"  # the service reports another version than expected
    STALE_PROCESS = "stale-process"  # the symlink was switched but the service still runs another release
    NOT_REPORTING = "not-reporting"  # service down, or it gave no version
    UNREACHABLE = "unreachable"
    NO_EXPECTATION = "no-expectation"  # neither a playbook nor a successful run says what it should run


@dataclass(frozen=True)
class Expected:
    version: str
    source: str  # "playbook FILE" or "run RUN_ID"


@dataclass(frozen=True)
class HostAudit:
    component: str
    host: str
    datacenter: str
    expected: Expected | None
    installed: str | None  # where `current` points
    reported: str | None  # what the running service says
    verdict: Verdict
    detail: str

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "host": self.host,
            "datacenter": self.datacenter,
            "expected": self.expected.version if self.expected else None,
            "expected_from": self.expected.source if self.expected else None,
            "installed": self.installed,
            "reported": self.reported,
            "verdict": str(self.verdict),
            "detail": self.detail,
        }


def expected_from_runs(records: Iterable[RunRecord], component: str) -> dict[str, Expected]:
    """Per host, the version the newest successful run of ``component`` left there (records oldest first)."""
    out: dict[str, Expected] = {}
    for record in records:
        if record.component != component or record.exit_code != 0:
            continue
        for host in record.hosts:
            if host.version:
                out[host.host] = Expected(host.version, f"run {record.run_id}")
    return out


def expected_from_hosts(answers: Mapping[str, Mapping[str, Any]]) -> dict[str, Expected]:
    """Per host, the release it records as the last it verified (its facts' ``verified``), where it has one."""
    out: dict[str, Expected] = {}
    for host, answer in answers.items():
        record = answer.get("verified")
        if isinstance(record, dict) and isinstance(record.get("version"), str):
            how = record.get("how") or "verify"
            out[host] = Expected(
                record["version"], f"host record: {how} of run {record.get('run')} at {record.get('at')}"
            )
    return out


def judge(
    component: str,
    host: str,
    datacenter: str,
    expected: Expected | None,
    answer: Mapping[str, Any],
    has_version_check: bool,
) -> HostAudit:
    """One host's verdict from its facts answer (``{"error": …}`` when unreachable)."""
    installed, reported = answer.get("installed"), answer.get("reported_version")

    def result(verdict: Verdict, detail: str) -> HostAudit:
        return HostAudit(component, host, datacenter, expected, installed, reported, verdict, detail)

    if "error" in answer:
        return result(Verdict.UNREACHABLE, f"unreachable: {answer['error']}")
    if expected is None:
        return result(Verdict.NO_EXPECTATION, "no successful run covered this host; name the playbook it should run")
    if not has_version_check:
        return result(Verdict.NOT_REPORTING, "the playbook has no `version` check, so the service cannot be asked")
    if answer.get("service") != "active":
        return result(Verdict.NOT_REPORTING, f"service is {answer.get('service') or 'unknown'}")
    if reported is None:
        why = answer.get("report_error") or "no answer"
        return result(Verdict.NOT_REPORTING, f"the service gave no version ({why})")
    if reported != expected.version:
        if installed == expected.version:
            return result(
                Verdict.STALE_PROCESS,
                f"current -> {installed}, but the running service reports {reported} (not restarted?)",
            )
        return result(Verdict.SKEW, f"reports {reported}, expected {expected.version} ({expected.source})")
    if installed != reported:
        return result(Verdict.STALE_PROCESS, f"service reports {reported}, but current -> {installed}")
    return result(Verdict.OK, f"reports {reported}")


def skew_counts(rows: Iterable[HostAudit]) -> dict[tuple[str, Verdict], int]:
    """Hosts per (component, verdict), every verdict present for each component seen."""
    out: dict[tuple[str, Verdict], int] = {}
    rows = list(rows)
    for component in sorted({r.component for r in rows}):
        for verdict in Verdict:
            out[(component, verdict)] = 0
    for r in rows:
        out[(r.component, r.verdict)] += 1
    return out
