"""Resume when the put-back itself cannot be verified: the host's starting release went bad meanwhile.

A run is killed with a host on the target (mid-bake, or mid-rollback of a failing run). Before anyone
resumes it, the release the host started on stops passing its checks there (a config change, a bad disk:
what incidents leave). Resume puts the host back, the agent's verify fails on the starting release, and
the host is on no verified release. The README's table says exit 4. Before the fix, a resume that was
"continuing the plan" upgraded the host again from there: its precheck failed "before the upgrade",
the host counted as untouched and the run said exit 3, "every failed host is back … verified".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.fleet import Fleet
from upgrader.errors import TransportError

NOW = ["--now", "2026-12-05T12:00:00+00:00", "--reason", "test: weekend"]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet.build(tmp_path, {"ny": ["ny-1"], "ch": ["ch-1"]}, {"ny-1": "5.0.0", "ch-1": "5.0.0"})
    yield f  # patched in the test itself: pytest swaps sys.stdout between set-up and the call
    f.close()


@pytest.mark.reliability(
    "resume of a killed run whose put-back lands on a starting release that now fails its checks",
    "exit 4 naming the host; the run goes no further (no host-begin after the failed put-back); the host keeps "
    "the run's lock and the message names `upgrader resume` and `upgrader unlock`",
)
@pytest.mark.parametrize(
    "kill",
    [("bake", True), ("stop", True)],
    ids=["killed-after-bake", "killed-after-upgrade"],
)
def test_a_put_back_that_fails_its_checks_ends_in_4_and_goes_no_further(
    fleet: Fleet, kill: tuple[str, bool], record_property: Any
) -> None:
    with fleet.patched():
        op, after = kill
        fleet.hosts.kill_controller("ch-1", op, after=after)
        book = str(fleet.books["5.1.0-auto"])
        first = fleet.cli(
            fleet.desk_a, "apply", book, "-i", str(fleet.inventory), "--artifacts", str(fleet.artifacts), "--yes",
            "--limit", "ch-1", "--log-format", "plain", *NOW,
        )  # fmt: skip
        assert first.killed and fleet.version("ch-1") == "5.1.0"
        fleet.mark("ch-1", "bad", "5.0.0")
        (run,) = [d.name for d in (fleet.desk_a / "runs").iterdir()]
        resumed = fleet.cli(fleet.desk_a, "resume", run, "--yes", "--log-format", "plain")
        entries = [json.loads(x) for x in (fleet.desk_a / "runs" / run / "journal.jsonl").read_text().splitlines()]
        resume_at = next(i for i, e in enumerate(entries) if e["event"] == "resume")
        after_resume = [e["event"] for e in entries[resume_at:]]
        put_back = [e for e in entries[resume_at:] if e["event"] == "rollback-end"]
        lock = fleet.lock("ch-1")
        record_property(
            "observed",
            f"resume exit {resumed.code}; ch-1 on {fleet.version('ch-1')}, verified={fleet.verified('ch-1')}; "
            f"put-back ok={[e.get('ok') for e in put_back]}; host-begin after it: {after_resume.count('host-begin')}; "
            f"lock run={lock and lock.get('run')}",
        )
        assert resumed.code == 4, resumed.out
        assert fleet.version("ch-1") == "5.0.0" and not fleet.verified("ch-1")
        assert [e.get("ok") for e in put_back] == [False]
        assert "host-begin" not in after_resume, after_resume
        said = resumed.out
        assert "ch-1" in said and f"upgrader resume {run}" in said and "upgrader unlock" in said, said
        assert lock is not None and lock.get("run") == run  # no one else may take it over unseen: it needs a human
        end = [e for e in entries if e["event"] == "run-end"][-1]
        assert end["exit_code"] == 4 and end["hosts"]["ch-1"]["state"] == "rollback-failed"


@pytest.fixture
def upgraded(tmp_path: Path) -> Iterator[Fleet]:
    """ch-1 on 5.1.0 as a past upgrade from 5.0.0 left it (5.0.0 staged, recorded)."""
    f = Fleet.build(tmp_path, {"ny": ["ny-1"], "ch": ["ch-1"]}, {"ny-1": "5.0.0", "ch-1": "5.1.0"})
    yield f  # patched in the test itself: pytest swaps sys.stdout between set-up and the call
    f.close()


@pytest.mark.reliability(
    "emergency rollback of a host with nothing to undo whose service is down and will not start",
    "the host is reported 'unhealthy' (nothing rolled back), not 'rollback-failed'; exit 4; its lock released",
)
def test_nothing_to_undo_but_down_is_unhealthy_not_a_failed_rollback(upgraded: Fleet, record_property: Any) -> None:
    with upgraded.patched():
        fleet = upgraded
        base = ["-i", str(fleet.inventory), "--log-format", "json", "--reason", "INC-1", "--yes", "--limit", "ch-1"]
        book = ["--playbook", str(fleet.books["5.2.0-auto"])]  # its service definition: the rollback sees it down
        fleet.mark("ch-1", "crash", "5.0.0")
        first = fleet.cli(fleet.desk_b, "rollback", "app", *base, "--to", "5.0.0", *book)  # 5.0.0 will not start
        again = fleet.cli(fleet.desk_b, "rollback", "app", *base, *book)  # nothing recorded before 5.0.0: no undo
        rows = [{row["host"]: row for line in r.json_lines() for row in line.get("rows") or []} for r in (first, again)]
        record_property(
            "observed",
            f"--to 5.0.0: exit {first.code}, {rows[0]['ch-1']['state']}; then rollback: exit {again.code}, "
            f"{rows[1]['ch-1']['state']!r} ({rows[1]['ch-1']['detail'][:70]}…); ch-1 on {fleet.version('ch-1')}, "
            f"lock {fleet.lock('ch-1')}",
        )
        assert (first.code, rows[0]["ch-1"]["state"]) == (4, "rollback-failed")  # a rollback that did fail
        assert fleet.version("ch-1") == "5.0.0" and not fleet.verified("ch-1")
        assert rows[1]["ch-1"]["state"] == "unhealthy", rows[1]
        assert "nothing to roll back" in rows[1]["ch-1"]["detail"]
        assert again.code == 4
        assert fleet.lock("ch-1") is None


@pytest.mark.reliability(
    "apply over a host whose running release fails its checks before the upgrade (left so by an earlier incident)",
    "the host is left alone (precheck), the run ends exit 4 with status 'unhealthy' naming it, and it is unlocked; "
    "the other hosts are upgraded",
)
def test_an_untouched_host_on_an_unhealthy_release_is_4_not_3(upgraded: Fleet, record_property: Any) -> None:
    with upgraded.patched():
        fleet = upgraded
        base = ["-i", str(fleet.inventory), "--log-format", "json"]
        fleet.mark("ch-1", "bad", "5.0.0")
        # The incident's rollback put ch-1 back on 5.0.0, whose checks now fail there (said as not applicable:
        # that rollback knew no checks of 5.0.0).
        back = fleet.cli(fleet.desk_a, "rollback", "app", *base, "--reason", "INC-3", "--yes", "--limit", "ch-1",
                         "--to", "5.0.0", "--playbook", str(fleet.books["5.1.0-auto"]))  # fmt: skip
        assert back.code == 0 and fleet.version("ch-1") == "5.0.0" and not fleet.verified("ch-1")
        run = fleet.cli(fleet.desk_a, "apply", str(fleet.books["5.1.0-auto"]), *base, "--artifacts",
                        str(fleet.artifacts), "--yes", *NOW)  # fmt: skip
        rows = {row["host"]: row for line in run.json_lines() for row in line.get("rows") or []}
        (run_id,) = [d.name for d in (fleet.desk_a / "runs").iterdir() if (d / "plan.json").exists()]
        entries = [json.loads(x) for x in (fleet.desk_a / "runs" / run_id / "journal.jsonl").read_text().splitlines()]
        end = entries[-1]
        record_property(
            "observed",
            f"apply exit {run.code}, status {end.get('status')!r}: {end.get('message')}; ch-1 {rows['ch-1']['state']} "
            f"on {fleet.version('ch-1')}, lock {fleet.lock('ch-1')}; ny-1 on {fleet.version('ny-1')}",
        )
        assert run.code == 4 and end["status"] == "unhealthy"
        assert "ch-1" in end["message"] and "unhealthy" in end["message"]
        assert fleet.version("ch-1") == "5.0.0" and fleet.lock("ch-1") is None
        assert fleet.version("ny-1") == "5.1.0" and fleet.verified("ny-1")


@pytest.mark.reliability(
    "emergency rollback whose controller dies right after a host's rollback failed (its release will not start)",
    "the host stays locked by the rollback's open run (not unlocked on no verified release with no one told); a "
    "second desk's rollback takes the lock over and names the host; with the controller alive the lock is released",
)
def test_a_failed_rollback_unheard_keeps_its_lock(upgraded: Fleet, record_property: Any) -> None:
    with upgraded.patched():
        fleet = upgraded
        base = ["-i", str(fleet.inventory), "--log-format", "json", "--reason", "INC-5", "--yes", "--limit", "ch-1"]
        book = ["--to", "5.0.0", "--playbook", str(fleet.books["5.2.0-auto"])]
        fleet.mark("ch-1", "crash", "5.0.0")
        fleet.hosts.kill_controller("ch-1", "rollback", after=True)  # dies as the failure comes back
        killed = fleet.cli(fleet.desk_a, "rollback", "app", *base, *book)
        lock = fleet.lock("ch-1")
        (run,) = [d.name for d in (fleet.desk_a / "runs").iterdir()]
        second = fleet.cli(fleet.desk_b, "rollback", "app", *base, *book)
        rows = {row["host"]: row for line in second.json_lines() for row in line.get("rows") or []}
        record_property(
            "observed",
            f"killed={killed.killed}; ch-1 on {fleet.version('ch-1')} locked by {lock and lock.get('kind')} run "
            f"{'the killed one' if lock and lock.get('run') == run else lock}; second desk: exit {second.code}, "
            f"ch-1 {rows['ch-1']['state']}, lock after {fleet.lock('ch-1')}",
        )
        assert killed.killed and fleet.version("ch-1") == "5.0.0" and not fleet.verified("ch-1")
        assert lock is not None and lock.get("run") == run and lock.get("kind") == "rollback"
        assert second.code == 4 and rows["ch-1"]["state"] == "unhealthy"  # on 5.0.0 already, which will not start
        assert "took over rollback run " + run in rows["ch-1"]["detail"]
        assert fleet.lock("ch-1") is None  # this controller heard the failure: it released the lock


@pytest.mark.reliability(
    "emergency rollback: a host's rollback fails, then the host is gone before the controller can release its lock",
    "the failure is reported as it was (rollback-failed, exit 4, no internal error); the lock stays with the run, "
    "as for a controller that died",
)
def test_a_host_gone_before_its_late_release_keeps_the_lock_and_its_failure(
    upgraded: Fleet, record_property: Any
) -> None:
    with upgraded.patched():
        fleet = upgraded
        base = ["-i", str(fleet.inventory), "--log-format", "json", "--reason", "INC-6", "--yes", "--limit", "ch-1"]
        fleet.mark("ch-1", "crash", "5.0.0")

        def gone(host: Any, program: dict[str, Any]) -> None:
            if [o.get("op") for o in program["ops"]] == ["lock"]:  # the late release, alone
                raise TransportError("ch-1", "connection lost (test)", "check the host")

        fleet.hosts["ch-1"].before_program.append(gone)
        run = fleet.cli(fleet.desk_a, "rollback", "app", *base, "--to", "5.0.0", "--playbook",
                        str(fleet.books["5.2.0-auto"]))  # fmt: skip
        rows = {row["host"]: row for line in run.json_lines() for row in line.get("rows") or []}
        lock = fleet.lock("ch-1")
        (run_id,) = [d.name for d in (fleet.desk_a / "runs").iterdir()]
        record_property(
            "observed",
            f"exit {run.code}; ch-1 {rows['ch-1']['state']}: {rows['ch-1']['detail'][:90]}…; lock held by "
            f"{'this run' if lock and lock.get('run') == run_id else lock}",
        )
        assert run.code == 4 and rows["ch-1"]["state"] == "rollback-failed"
        assert "lock released" not in rows["ch-1"]["detail"]
        assert lock is not None and lock.get("run") == run_id
