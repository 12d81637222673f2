"""Run control on fake hosts running the real agent: gates (right, wrong, --ahead), abort (and --keep),
Ctrl-C during a bake (once, twice), resume's view afterwards, and exit codes from the hosts' end states.

The engine runs here at real time (its waits poll every TICK); `promote`/`abort` are the real CLI, in
this process or as separate processes at once.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes.scenario import FROM, TO, Scenario, entries
from upgrader.cli.main import main
from upgrader.engine import apply as apply_engine
from upgrader.engine import gates
from upgrader.engine.apply import Apply, HostRun, Outcome, stop_on_signals, verdict
from upgrader.engine.progress import Progress
from upgrader.engine.resume import analyze, ended, halted
from upgrader.errors import ExitCode
from upgrader.journal import Journal
from upgrader.vocabulary import HostState

REPO = Path(__file__).resolve().parents[2]
RUN = "20261205T070000Z-app-1a2b"
GATED = {
    "canary": {"promote": "manual", "promote_timeout": "60s", "scope": "datacenter"},
    "rollout": {"pause_between_datacenters": "manual"},
}
# phases: ny-1 canary | promote-ny: ny-2 | enter-ch: ch-1 canary | promote-ch: ch-2


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[Scenario]:
    s = Scenario.build(tmp_path, {"ny": ["ny-1", "ny-2"], "ch": ["ch-1", "ch-2"]}, playbook=GATED)
    yield s
    s.close()


class Running:
    """The engine on its own thread, at real time; ``outcome`` once it has ended."""

    def __init__(self, s: Scenario, journal: Journal | None = None, **kwargs: Any) -> None:
        self.s = s
        self.journal = journal or s.journal(RUN)
        self.journal.write_file("plan.json", s.plan.to_json())  # as `apply` does: promote --ahead reads its gates
        self.out = io.StringIO()
        self.engine = Apply(
            s.plan,
            s.hosts.pool(),
            self.journal,
            Progress("json", stream=self.out),
            artifacts=s.artifacts,
            operator="pytest",
            sleep=time.sleep,
            **kwargs,
        )
        self.outcome: Outcome | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.outcome = self.engine.run()
        finally:
            self.engine.pool.close()

    def until(self, test: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = entries(self.journal)
            if test(found):
                return found
            time.sleep(0.02)
        raise AssertionError(f"journal never matched; last: {[e['event'] for e in entries(self.journal)][-5:]}")

    def waiting_at(self, gate: str) -> list[dict[str, Any]]:
        return self.until(lambda es: any(e["event"] == "gate-wait" and e["gate"] == gate for e in es))

    def end(self, timeout: float = 30.0) -> Outcome:
        self.thread.join(timeout)
        assert self.outcome is not None, "the run did not end"
        return self.outcome


def cli(s: Scenario, *argv: str) -> int:
    return main(["--state-dir", str(s.tmp / "state"), *argv])


def no_locks(s: Scenario) -> bool:
    return all(h.lock("app") is None for h in s.hosts.hosts.values())


# ---------------------------------------------------------------- gates


@pytest.mark.reliability(
    "promote for a gate the run is not waiting at (a later datacenter's)",
    "refused, exit 1, naming the gate it waits at; a promote planted before the gate "
    "does not pass it; the right promote does",
)
def test_a_promote_for_a_later_gate_is_refused_and_never_passes_it(
    gated: Scenario, capsys: pytest.CaptureFixture[str], record_property: Callable[[str, str], None]
) -> None:
    run = Running(gated)
    run.waiting_at("promote-ny")
    wrong = cli(gated, "promote", RUN, "--gate", "promote-ch", "--reason", "early")
    said = capsys.readouterr().err
    assert wrong == 1 and "waits at gate promote-ny" in said, said
    assert gates.decisions(run.journal.directory) == []  # nothing recorded
    # A promote for promote-ch written anyway (as the old command did) must not count when the run gets there.
    gates.request(run.journal.directory, gates.DecisionKind.PROMOTE, gate="promote-ch", operator="old", reason="")
    assert cli(gated, "promote", RUN, "--reason", "ny fine", "--wait", "5") == 0
    assert "gate promote-ny passed" in capsys.readouterr().out
    run.waiting_at("enter-ch")
    assert cli(gated, "promote", RUN, "--wait", "5") == 0
    run.waiting_at("promote-ch")
    time.sleep(1.5)  # the planted promote had its chance: a gate waiting looks every 0.5 s
    early = [e for e in entries(run.journal) if e["event"] == "gate-end" and e["gate"] == "promote-ch"]
    assert early == []
    assert cli(gated, "promote", RUN, "--wait", "5") == 0
    outcome = run.end()
    ends = {e["gate"]: e for e in entries(run.journal) if e["event"] == "gate-end"}
    waited = ends["promote-ch"]["waited"]
    assert outcome.exit_code == ExitCode.OK and ends["promote-ch"]["decision"]["operator"] != "old"
    assert waited >= 1.5 and set(gated.versions().values()) == {TO} and no_locks(gated)
    record_property(
        "observed",
        f"wrong gate: exit {wrong}, said {said.strip().splitlines()[0][:120]!r}; "
        f"planted promote ignored: promote-ch waited {waited}s until the real promote; "
        f"run exit {int(outcome.exit_code)}, all hosts on {TO}",
    )


@pytest.mark.reliability(
    "promote --gate G --ahead (pre-approval)", "accepted, audited with ahead, passes G when reached, shown by show"
)
def test_a_gate_approved_ahead_passes_when_reached_and_is_shown(
    gated: Scenario, capsys: pytest.CaptureFixture[str], record_property: Callable[[str, str], None]
) -> None:
    run = Running(gated)
    run.waiting_at("promote-ny")
    assert cli(gated, "promote", RUN, "--ahead", "--reason", "no gate") == 1  # --ahead needs --gate
    assert cli(gated, "promote", RUN, "--gate", "nope", "--ahead", "--reason", "x") == 1
    code = cli(gated, "promote", RUN, "--gate", "enter-ch", "--ahead", "--reason", "CAB-7 sign-off")
    assert code == 0
    capsys.readouterr()
    assert cli(gated, "show", RUN) == 0
    assert "gate enter-ch approved ahead by" in capsys.readouterr().out  # before the run gets there
    assert cli(gated, "promote", RUN, "--wait", "5") == 0
    run.waiting_at("promote-ch")
    assert cli(gated, "promote", RUN, "--wait", "5") == 0
    outcome = run.end()
    end = next(e for e in entries(run.journal) if e["event"] == "gate-end" and e["gate"] == "enter-ch")
    assert end["outcome"] == "promoted" and end["decision"]["ahead"] is True
    audit = [json.loads(x) for x in (gated.tmp / "state" / "audit.log").read_text().splitlines()]
    assert [a.get("ahead") for a in audit if a["gate"] == "enter-ch"] == [True]
    capsys.readouterr()
    assert cli(gated, "show", RUN) == 0
    shown = capsys.readouterr().out
    assert "enter-ch promoted by" in shown and "approved ahead" in shown, shown
    assert cli(gated, "report", RUN, "--out", str(gated.tmp / "report.md")) == 0
    report = (gated.tmp / "report.md").read_text()
    assert "gate enter-ch promoted by" in report and "approved ahead" in report, report
    assert outcome.exit_code == ExitCode.OK
    line = next(x for x in shown.splitlines() if "ahead" in x)
    record_property(
        "observed",
        f"--ahead exit {code}; enter-ch passed after {end['waited']}s with ahead=true; "
        f"audit ahead=true; show: {line[-80:]!r}",
    )


# ---------------------------------------------------------------- abort


@pytest.mark.reliability(
    "abort RUN while the canary waits at its promote gate (policy 'host')",
    "every host the run changed back on its starting release, verified; exit 3; no lock",
)
def test_an_abort_at_the_gate_puts_the_canary_back(
    gated: Scenario, capsys: pytest.CaptureFixture[str], record_property: Callable[[str, str], None]
) -> None:
    run = Running(gated)
    run.waiting_at("promote-ny")
    assert gated.versions()["ny-1"] == TO
    started = time.monotonic()
    said = cli(gated, "abort", RUN, "--reason", "INC-9", "--wait", "5")
    outcome = run.end()
    seconds = time.monotonic() - started
    assert said == 0 and "took the abort" in capsys.readouterr().out
    assert (outcome.exit_code, outcome.status) == (ExitCode.FAILED_ROLLED_BACK, "aborted"), outcome.message
    assert set(gated.versions().values()) == {FROM} and no_locks(gated)
    assert all(gated.hosts[h].state("app.service") == "active" for h in gated.versions())
    assert outcome.hosts["ny-1"].state == HostState.ROLLED_BACK
    record_property(
        "observed",
        f"abort exit {said}; run exit {int(outcome.exit_code)} ({outcome.status}) "
        f"{seconds:.2f}s after the abort; versions {gated.versions()}; no lock",
    )


@pytest.mark.reliability(
    "abort RUN --keep at the promote gate",
    "canary stays on the new release, verified; the rest untouched; exit 5; journaled",
)
def test_an_abort_with_keep_leaves_the_canary(gated: Scenario, record_property: Callable[[str, str], None]) -> None:
    run = Running(gated)
    run.waiting_at("promote-ny")
    assert cli(gated, "abort", RUN, "--reason", "keep it", "--keep", "--wait", "5") == 0
    outcome = run.end()
    assert (outcome.exit_code, outcome.status) == (ExitCode.HALTED, "aborted"), outcome.message
    assert gated.versions() == {"ny-1": TO, "ny-2": FROM, "ch-1": FROM, "ch-2": FROM} and no_locks(gated)
    kept = [e for e in entries(run.journal) if e["event"] == "abort-kept"]
    assert kept and kept[0]["hosts"] == ["ny-1"]
    record_property(
        "observed",
        f"run exit {int(outcome.exit_code)} ({outcome.status}); versions {gated.versions()}; "
        f"abort-kept {kept[0]['hosts']}",
    )


@pytest.mark.reliability(
    "a promote and an abort at the same moment, from two processes",
    "one consistent outcome: every host back; each exit code says what happened to it",
)
def test_a_promote_and_an_abort_from_two_processes_at_once(
    gated: Scenario, record_property: Callable[[str, str], None]
) -> None:
    run = Running(gated)
    run.waiting_at("promote-ny")
    base = [sys.executable, "-m", "upgrader", "--state-dir", str(gated.tmp / "state")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = {
        kind: subprocess.Popen(
            [*base, kind, RUN, "--reason", f"{kind} at once", "--wait", "10"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for kind in ("promote", "abort")
    }
    said = {kind: (p.wait(30), "".join(p.communicate()).strip().splitlines()[-1]) for kind, p in procs.items()}
    outcome = run.end()
    gate_end = next(e for e in entries(run.journal) if e["event"] == "gate-end" and e["gate"] == "promote-ny")
    assert said["abort"][0] == 0
    assert (said["promote"][0] == 0) == (gate_end["outcome"] == "promoted"), (said, gate_end)
    assert outcome.status == "aborted" and outcome.exit_code == ExitCode.FAILED_ROLLED_BACK
    assert set(gated.versions().values()) == {FROM} and no_locks(gated)
    record_property(
        "observed",
        f"gate {gate_end['outcome']}; promote exit {said['promote'][0]} "
        f"({said['promote'][1][:70]!r}); abort exit {said['abort'][0]}; run exit "
        f"{int(outcome.exit_code)}; versions {sorted(set(gated.versions().values()), key=str)}",
    )


# ---------------------------------------------------------------- Ctrl-C


@pytest.fixture
def baking(tmp_path: Path) -> Iterator[Scenario]:
    s = Scenario.build(
        tmp_path, {"ny": ["ny-1", "ny-2"]}, playbook={"canary": {"bake": "30s", "bake_interval": "500ms"}}
    )
    yield s
    s.close()


def interrupted(s: Scenario, signals: int, monkeypatch: pytest.MonkeyPatch) -> tuple[Outcome, float, float, str]:
    """Run on this (the main) thread; SIGINT ``signals`` times once the bake has begun.
    Returns the outcome, seconds from the first signal to the bake's end and to the run's end, and stderr."""
    monkeypatch.setattr(apply_engine, "HEARTBEAT", 0.3)
    journal = s.journal(RUN)
    told: list[str] = []
    engine = Apply(
        s.plan,
        s.hosts.pool(),
        journal,
        Progress("plain", stream=io.StringIO()),
        artifacts=s.artifacts,
        operator="pytest",
        sleep=time.sleep,
    )
    sent: list[float] = []

    def interrupt() -> None:
        while not any(e["event"] == "bake-begin" for e in entries(journal)):
            time.sleep(0.02)
        time.sleep(0.7)
        for _ in range(signals):
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)

    threading.Thread(target=interrupt, daemon=True).start()
    try:
        with stop_on_signals(engine, say=told.append):
            outcome = engine.run()
    finally:
        engine.pool.close()
    ended_at = time.monotonic()
    bake_end = next(e for e in entries(journal) if e["event"] == "bake-end")
    bake_seconds = Journal_at(bake_end) - sent[0]
    return outcome, bake_seconds, ended_at - sent[0], "\n".join(told)


_MONO = time.monotonic() - time.time()


def Journal_at(entry: dict[str, Any]) -> float:
    """A journal entry's wall-clock time on the monotonic clock (the test's measuring clock)."""
    return datetime.fromisoformat(entry["at"]).timestamp() + _MONO


@pytest.mark.reliability(
    "SIGINT during a 30 s canary bake",
    "the bake ends within ~1 s, the canary is put back "
    "verified, the run ends resumable (exit 5) and resume carries it to the end",
)
def test_one_sigint_ends_the_bake_at_once_and_the_run_can_be_resumed(
    baking: Scenario,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    record_property: Callable[[str, str], None],
) -> None:
    outcome, bake_s, run_s, told = interrupted(baking, 1, monkeypatch)
    assert bake_s < 1.0 and run_s < 5.0, (bake_s, run_s)
    assert "SIGINT: stopping" in told
    assert (outcome.exit_code, outcome.status, outcome.resumable) == (ExitCode.HALTED, "halted", True), outcome.message
    assert set(baking.versions().values()) == {FROM} and no_locks(baking)
    journal = baking.runs[-1]
    es = entries(journal)
    halt = next(e for e in es if e["event"] == "halt" and e.get("signal"))
    assert (halt["signal"], halt["hard"], halt["resumable"]) == ("SIGINT", False, True)
    assert halted(es) is not None and ended(es) is None
    # resume's view: not "already finished"; carrying on puts every host on the target.
    again, _ = baking.apply(recovery=analyze(es, baking.plan), journal=journal)
    assert again.exit_code == ExitCode.OK and set(baking.versions().values()) == {TO}
    record_property(
        "observed",
        f"bake ended {bake_s:.2f}s after SIGINT, run ended after {run_s:.2f}s; exit "
        f"{int(outcome.exit_code)} resumable; versions then {FROM}; resume exit "
        f"{int(again.exit_code)}, all on {TO}",
    )


@pytest.mark.reliability(
    "SIGINT twice during a canary bake",
    "stops at the next safe point without rolling back; "
    "journal says hard stop; resume puts the canary back and finishes",
)
def test_a_second_sigint_stops_without_rolling_back_and_resume_finishes(
    baking: Scenario, monkeypatch: pytest.MonkeyPatch, record_property: Callable[[str, str], None]
) -> None:
    outcome, bake_s, _run_s, told = interrupted(baking, 2, monkeypatch)
    assert bake_s < 1.0 and "again" in told
    assert (outcome.exit_code, outcome.resumable) == (ExitCode.HALTED, True), outcome.message
    assert baking.versions() == {"ny-1": TO, "ny-2": FROM}  # the canary was left as it was: resume's job
    # never between a stop and a start: every service runs
    assert all(h.state("app.service") == "active" for h in baking.hosts.hosts.values())
    es = entries(baking.runs[-1])
    halt = next(e for e in es if e["event"] == "halt" and e.get("signal"))
    assert halt["hard"] is True and not any(e["event"] == "rollback-begin" for e in es)
    recovery = analyze(es, baking.plan)
    assert recovery.back == ["ny-1"] and not recovery.failing
    again, after = baking.apply(recovery=recovery, journal=baking.runs[-1])
    assert again.exit_code == ExitCode.OK and set(baking.versions().values()) == {TO} and no_locks(baking)
    assert any(e["event"] == "rollback-end" and e["host"] == "ny-1" for e in after)
    record_property(
        "observed",
        f"bake ended {bake_s:.2f}s after the first SIGINT; exit {int(outcome.exit_code)}; "
        f"canary left on {TO}, halt hard=true; resume put it back and ended exit "
        f"{int(again.exit_code)}",
    )


@pytest.mark.reliability(
    "abort RUN during a 30 s canary bake", "the bake ends within ~1 s; the canary goes back, verified; exit 3"
)
def test_an_abort_during_a_bake_ends_it_and_puts_the_canary_back(
    baking: Scenario, capsys: pytest.CaptureFixture[str], record_property: Callable[[str, str], None]
) -> None:
    run = Running(baking)
    run.until(lambda es: any(e["event"] == "bake-begin" for e in es))
    time.sleep(0.5)
    asked = time.time()
    said = cli(baking, "abort", RUN, "--reason", "INC-3 during the bake", "--wait", "5")
    outcome = run.end()
    bake_end = next(e for e in entries(run.journal) if e["event"] == "bake-end")
    took = datetime.fromisoformat(bake_end["at"]).timestamp() - asked
    assert said == 0 and took < 1.5 and bake_end.get("cut"), (said, took)
    assert (outcome.exit_code, outcome.status) == (ExitCode.FAILED_ROLLED_BACK, "aborted"), outcome.message
    assert set(baking.versions().values()) == {FROM} and no_locks(baking)
    record_property(
        "observed",
        f"abort exit {said}; bake ended {took:.2f}s after the abort was asked; run exit "
        f"{int(outcome.exit_code)}; versions {baking.versions()}",
    )


def test_a_bake_prints_a_heartbeat_with_the_time_left(baking: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apply_engine, "HEARTBEAT", 0.5)
    run = Running(baking)
    run.until(lambda es: any(e["event"] == "bake-begin" for e in es))
    time.sleep(2.2)
    run.engine.halted = "test over"  # a stop, as a signal would make it
    run.end()
    beats = [json.loads(line) for line in run.out.getvalue().splitlines() if '"wait"' in line]
    assert len(beats) >= 3 and all("s left" in b["message"] for b in beats)
    times = [b["at"] for b in beats]
    assert times == sorted(times)


def test_resume_names_where_the_hosts_are_when_a_run_is_over(
    gated: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Running(gated)
    run.waiting_at("promote-ny")
    assert cli(gated, "abort", RUN, "--reason", "INC-1", "--wait", "5") == 0
    run.end()
    capsys.readouterr()
    assert cli(gated, "resume", RUN, "--yes") == 1
    said = capsys.readouterr().err
    assert f"{FROM}: ch-1, ch-2, ny-1, ny-2" in said, said
    assert cli(gated, "promote", RUN) == 1 and "already finished" in capsys.readouterr().err


# ---------------------------------------------------------------- exit codes from end states

STATES = [
    HostState.PENDING,
    HostState.STAGED,
    HostState.UNTOUCHED,
    HostState.DONE,
    HostState.VERIFIED,
    HostState.FAILED,
    HostState.UNREACHABLE,
    HostState.HELD,
    HostState.ROLLED_BACK,
    HostState.ROLLBACK_FAILED,
    HostState.HANDED_OVER,
]


@given(
    st.lists(st.tuples(st.sampled_from(STATES), st.booleans()), min_size=1, max_size=6),
    st.integers(0, 3),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_the_exit_code_follows_from_the_hosts_end_states(
    hosts: list[tuple[HostState, bool]], failures: int, aborted: bool, halt: bool, resumable: bool
) -> None:
    runs = {}
    for i, (state, touched) in enumerate(hosts):
        run = HostRun.__new__(HostRun)
        run.plan = _Plan(f"h{i}")  # type: ignore[assignment]  # verdict reads only the host's name and versions
        run.state, run.detail, run.touched, run.failure = state, "", touched, ""
        runs[f"h{i}"] = run
    held = any(s == HostState.HELD for s, _ in hosts)
    code, _status, _message = verdict(
        runs,
        held=held,
        failures=failures,
        aborted=aborted,
        halted="stopped" if halt else None,
        target=TO,
        resumable=resumable,
    )
    needs_human = held or any(
        s in (HostState.ROLLBACK_FAILED, HostState.UNREACHABLE) or (s == HostState.FAILED and t) for s, t in hosts
    )
    on_target = [s in (HostState.DONE, HostState.VERIFIED) for s, _ in hosts]
    if needs_human:
        assert code == ExitCode.ROLLBACK_FAILED
    elif all(on_target):
        assert code == ExitCode.OK
    else:
        assert code in (ExitCode.FAILED_ROLLED_BACK, ExitCode.HALTED)
        # 3 never says "every host back" while a host the run did not finish for failure is on the target,
        # unless hosts on the target are the ones that passed (policy host: failures > 0).
        if code == ExitCode.FAILED_ROLLED_BACK and not failures:
            assert not any(on_target)
        if code == ExitCode.HALTED:
            assert not failures


class _Plan:
    def __init__(self, host: str) -> None:
        self.host = host
        self.path = [TO]
        self.from_version = FROM


@pytest.mark.reliability(
    "a run that ends needing a human (rollback: hold) keeps the failed host's lock",
    "the lock is kept only because the run is resumable; the message says how to resume "
    "or release it; resume puts the host back and leaves no lock",
)
def test_a_lock_outlives_a_run_only_when_it_is_resumable_and_says_how(
    tmp_path: Path, record_property: Callable[[str, str], None]
) -> None:
    s = Scenario.build(tmp_path, {"ny": ["ny-1", "ny-2"]}, bad={"ny-2"}, on_failure="hold")
    try:
        outcome, es = s.apply(journal=s.journal(RUN))
        assert (outcome.exit_code, outcome.resumable) == (ExitCode.ROLLBACK_FAILED, True)
        locked = [h for h, host in s.hosts.hosts.items() if host.lock("app")]
        assert locked == ["ny-2"] and f"upgrader resume {RUN}" in outcome.message
        assert "upgrader unlock app" in outcome.message
        assert halted(es) is not None  # `resume` takes it
        again, _ = s.apply(recovery=analyze(es, s.plan), journal=s.runs[-1])
        assert s.versions() == {"ny-1": TO, "ny-2": FROM} and no_locks(s)
        assert again.exit_code == ExitCode.FAILED_ROLLED_BACK, again.message
        record_property(
            "observed",
            f"exit {int(outcome.exit_code)}, locked {locked}, message names resume and "
            f"unlock; resume exit {int(again.exit_code)}, versions {s.versions()}, no lock",
        )
    finally:
        s.close()
