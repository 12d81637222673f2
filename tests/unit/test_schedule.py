"""`upgrader schedule`: unit text, the cron line, and what systemd itself makes of them."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from upgrader.cli.main import main
from upgrader.errors import UpgraderError
from upgrader.scheduling import At, Job, parse_at, service_unit, systemd_quote, timer_unit

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "ordergw-5.2.0.yml"
INVENTORY = ROOT / "inventories" / "prod-na.yml"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or ""
needs_systemd = pytest.mark.skipif(not SYSTEMD_ANALYZE, reason="systemd-analyze is not installed on this machine")


def test_parse_at() -> None:
    at = parse_at("Sat 02:00 America/New_York")
    assert at == At(5, dt.time(2, 0), "America/New_York")
    assert at.on_calendar() == "Sat *-*-* 02:00:00 America/New_York"
    assert at.cron_fields() == "0 2 * * 6"
    assert parse_at("Sun 7:05 Europe/London").cron_fields() == "5 7 * * 0"
    for bad in ("Sat 02:00", "Saturday 02:00 UTC", "Sat 25:00 UTC", "Sat 02:00 Mars/Olympus"):
        with pytest.raises(UpgraderError):
            parse_at(bad)


def test_next_elapse_is_local_wall_clock_across_dst() -> None:
    at = parse_at("Sat 02:00 America/New_York")
    ny = ZoneInfo("America/New_York")
    assert at.next_elapse(dt.datetime(2026, 3, 5, 12, tzinfo=ny)) == dt.datetime(2026, 3, 7, 7, tzinfo=dt.UTC)
    assert at.next_elapse(dt.datetime(2026, 3, 7, 2, tzinfo=ny)) == dt.datetime(2026, 3, 14, 6, tzinfo=dt.UTC)


def test_systemd_quoting() -> None:
    assert systemd_quote("/opt/upgrader/bin/upgrader") == "/opt/upgrader/bin/upgrader"
    assert systemd_quote("/srv/my plays/a.yml") == '"/srv/my plays/a.yml"'
    assert systemd_quote("50%$HOME") == '"50%%$$HOME"'
    assert systemd_quote('say "hi"\\') == '"say \\"hi\\"\\\\"'


def test_line_breaks_are_refused() -> None:
    with pytest.raises(UpgraderError):
        Job("x", ("/bin/true", "a\nExecStartPre=/bin/evil"), "/", "/etc/x.env", "d", "/tmp/l")


def schedule(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[Path, Path, str]:
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()  # output directories are never created (loading/output.py)
    rc = main(
        [
            "--state-dir",
            str(tmp_path / "state"),
            "schedule",
            str(PLAYBOOK),
            "-i",
            str(INVENTORY),
            "--at",
            "Sat 02:00 America/New_York",
            "--unit-dir",
            str(unit_dir),
            "--name",
            "upg-test",
            *extra,
        ]
    )
    assert rc == 0
    return unit_dir / "upg-test.service", unit_dir / "upg-test.timer", capsys.readouterr().out


def test_generated_units(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service, timer, out = schedule(tmp_path, capsys)
    text = service.read_text()
    assert "Type=oneshot" in text and "TimeoutStartSec=infinity" in text
    assert "EnvironmentFile=/etc/upgrader/upg-test.env" in text
    assert f"WorkingDirectory={Path.cwd()}" in text
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    artifacts = (Path("build") / "artifacts").resolve()
    assert exec_start.endswith(
        f" --state-dir {tmp_path / 'state'} apply {PLAYBOOK} -i {INVENTORY} "
        f"--artifacts {artifacts} --yes --log-format json"
    )
    assert exec_start.removeprefix("ExecStart=").startswith("/")
    timer_text = timer.read_text()
    assert "OnCalendar=Sat *-*-* 02:00:00 America/New_York" in timer_text
    assert "Persistent=false" in timer_text and "Unit=upg-test.service" in timer_text
    assert "CRON_TZ=America/New_York\n0 2 * * 6 cd " in out
    assert "flock -n" in out and "--yes --log-format json" in out


def test_stdout_without_unit_dir(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schedule", str(PLAYBOOK), "-i", str(INVENTORY), "--at", "Sat 02:00 America/New_York"]) == 0
    out = capsys.readouterr().out
    assert "# ---- upgrader-ordergw-5.2.0.service" in out and "[Timer]" in out and "CRON_TZ=" in out


@needs_systemd
def test_systemd_analyze_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service, timer, _ = schedule(tmp_path, capsys)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(service), str(timer)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "upg-test" not in result.stderr, result.stderr  # warnings about our units fail the test too


@needs_systemd
def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    job = Job("upg-bad", ("relative/upgrader", "apply"), "/", "/etc/x.env", "d", "/tmp/l")
    (tmp_path / "upg-bad.service").write_text(service_unit(job))
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(tmp_path / "upg-bad.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "upg-bad" in result.stderr  # proves the check above can fail


@needs_systemd
def test_systemd_calendar_agrees_with_zoneinfo() -> None:
    at = parse_at("Sat 02:00 America/New_York")
    now = dt.datetime.now(dt.UTC)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "calendar", "--iterations=2", at.on_calendar()],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TZ": "UTC"},
    )
    assert result.returncode == 0, result.stderr
    found = re.findall(r"(?:Next elapse|Iter\. #2): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", result.stdout)
    first = at.next_elapse(now)
    expected = [first, at.next_elapse(first)]
    assert [dt.datetime.fromisoformat(f).replace(tzinfo=dt.UTC) for f in found] == expected, result.stdout


def test_timer_unit_text_is_stable() -> None:
    job = Job("u", ("/usr/bin/upgrader", "apply"), "/srv", "/etc/u.env", "upgrader: x", "/tmp/l")
    text = timer_unit(job, parse_at("Fri 21:30 Europe/London"))
    assert text.count("OnCalendar=Fri *-*-* 21:30:00 Europe/London") == 1


def test_parse_on_refuses_times_a_dst_change_makes_ambiguous_or_impossible() -> None:
    from upgrader.scheduling import parse_on

    on = parse_on("2026-12-05 02:00 America/New_York")
    assert on.on_calendar() == "2026-12-05 02:00:00 America/New_York"
    assert on.next_elapse(dt.datetime(2026, 12, 1, tzinfo=dt.UTC)) == dt.datetime(2026, 12, 5, 7, tzinfo=dt.UTC)
    assert on.next_elapse(dt.datetime(2026, 12, 6, tzinfo=dt.UTC)) is None
    for bad in (
        "2026-03-08 02:30 America/New_York",  # spring forward: 02:30 never happens
        "2026-11-01 01:30 America/New_York",  # fall back: 01:30 happens twice
        "2026-02-30 02:00 UTC",
        "2026-12-05 02:00",
        "2026-12-05 02:00 Mars/Olympus",
        "Sat 02:00 UTC",
    ):
        with pytest.raises(UpgraderError):
            parse_on(bad)


def test_user_and_on_failure_reach_the_unit_and_are_checked() -> None:
    from upgrader.scheduling import parse_on

    job = Job(
        "upg-x",
        ("/bin/true",),
        "/srv",
        "/etc/x.env",
        "upgrader: plan.json",
        "/tmp/l",
        user="deploy",
        on_failure="upgrader-notify@%n.service",
    )
    service = service_unit(job)
    assert "\nUser=deploy\n" in service and "\nOnFailure=upgrader-notify@%n.service\n" in service
    timer = timer_unit(job, parse_on("2026-12-05 02:00 America/New_York"))
    assert "OnCalendar=2026-12-05 02:00:00 America/New_York" in timer and "RemainAfterElapse=no" in timer
    for user in ("root\nExecStartPre=/bin/evil", "-u", "Deploy Team"):
        with pytest.raises(UpgraderError):
            Job("upg-x", ("/bin/true",), "/srv", "/etc/x.env", "d", "/tmp/l", user=user)
    with pytest.raises(UpgraderError):
        Job("upg-x", ("/bin/true",), "/srv", "/etc/x.env", "d", "/tmp/l", on_failure="-x.service")


@needs_systemd
def test_systemd_accepts_the_one_off_timer_with_user_and_on_failure(tmp_path: Path) -> None:
    from upgrader.scheduling import parse_on

    (tmp_path / "x.env").write_text("")
    (tmp_path / "upgrader-notify@.service").write_text("[Service]\nType=oneshot\nExecStart=/bin/true %i\n")
    job = Job(
        "upg-once",
        ("/bin/true",),
        "/",
        str(tmp_path / "x.env"),
        "d",
        "/tmp/l",
        user="root",
        on_failure="upgrader-notify@%n.service",
    )
    (tmp_path / "upg-once.service").write_text(service_unit(job))
    (tmp_path / "upg-once.timer").write_text(timer_unit(job, parse_on("2026-12-05 02:00 America/New_York")))
    result = subprocess.run(
        [
            str(SYSTEMD_ANALYZE),
            "verify",
            "--man=no",
            str(tmp_path / "upg-once.service"),
            str(tmp_path / "upg-once.timer"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "upg-once" not in result.stderr, result.stderr


def _saved_plan(tmp_path: Path) -> Path:
    """playbook, inventory and an offline plan.json in tmp_path (the working directory)."""
    shutil.copy(PLAYBOOK, tmp_path / "pb.yml")
    shutil.copy(INVENTORY, tmp_path / "inv.yml")
    assert (
        main(
            [
                "--state-dir",
                str(tmp_path / "state"),
                "plan",
                "pb.yml",
                "-i",
                "inv.yml",
                "--offline",
                "--out",
                "plan.json",
            ]
        )
        == 0
    )
    return tmp_path / "plan.json"


def test_schedule_a_reviewed_plan_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    plan = _saved_plan(tmp_path)
    (tmp_path / "units").mkdir()
    assert (
        main(
            [
                "--state-dir",
                str(tmp_path / "state"),
                "schedule",
                "plan.json",
                "-i",
                "inv.yml",
                "--on",
                "2099-12-05 02:00 America/New_York",
                "--user",
                "root",
                "--unit-dir",
                "units",
            ]
        )
        == 0
    )
    units = tmp_path / "units"
    service = (units / "upgrader-ordergw-5.2.0.service").read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    reviewed = json.loads(plan.read_text())["content_hash"]
    assert exec_start.endswith(
        f" --state-dir {tmp_path / 'state'} apply {plan} --plan-hash {reviewed} "
        f"-i {tmp_path / 'inv.yml'} --artifacts {tmp_path / 'build' / 'artifacts'} "
        "--yes --log-format json"
    )
    assert f"Description=upgrader: apply plan {plan} (ordergw 5.2.0, sha256:" in service
    assert "\nUser=root\n" in service and f"\nEnvironment=UPGRADER_STATE_DIR={tmp_path / 'state'}\n" in service
    assert "\nOnFailure=upgrader-ordergw-5.2.0-failed.service\n" in service
    failed = (units / "upgrader-ordergw-5.2.0-failed.service").read_text()
    assert " notify failed -i " in failed and "--component ordergw" in failed
    timer = (units / "upgrader-ordergw-5.2.0.timer").read_text()
    assert "OnCalendar=2099-12-05 02:00:00 America/New_York" in timer
    if SYSTEMD_ANALYZE:
        result = subprocess.run(
            [SYSTEMD_ANALYZE, "verify", "--man=no", *map(str, sorted(units.iterdir()))],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0 and "upgrader-ordergw" not in result.stderr, result.stderr


@pytest.mark.reliability("an edited plan handed to `schedule`", "refused at once, exit 1, no unit written")
def test_schedule_refuses_an_edited_plan_and_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    record_property: Callable[[str, object], None],
) -> None:
    import json

    from upgrader.models.plan import Plan

    monkeypatch.chdir(tmp_path)
    plan = _saved_plan(tmp_path)
    data = json.loads(plan.read_text())
    data["spec"]["canary"]["bake"] = 0.0
    plan.write_text(Plan.from_data(data).sealed().to_json())
    (tmp_path / "units").mkdir()
    capsys.readouterr()
    code = main(
        [
            "--state-dir",
            str(tmp_path / "state"),
            "schedule",
            "plan.json",
            "-i",
            "inv.yml",
            "--at",
            "Sat 02:00 America/New_York",
            "--unit-dir",
            "units",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "spec.canary.bake" in err
    assert list((tmp_path / "units").iterdir()) == []
    record_property("observed", f"exit {code}; {err.strip().splitlines()[0][:110]}; units/ left empty")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--on", "2020-01-04 02:00 America/New_York"], "in the past"),
        (["--at", "Sat 02:00 America/New_York", "--user", "no-such-user-x"], "no such user"),
        (["--at", "Sat 02:00 America/New_York", "--on", "2099-01-04 02:00 UTC"], None),  # usage: one or the other
    ],
)
def test_schedule_refusals(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str | None,
) -> None:
    monkeypatch.chdir(tmp_path)
    _saved_plan(tmp_path)
    (tmp_path / "u").mkdir()
    argv = ["--state-dir", str(tmp_path / "state"), "schedule", "plan.json", "-i", "inv.yml", "--unit-dir", "u", *extra]
    if message is None:
        with pytest.raises(SystemExit) as usage:
            main(argv)
        assert usage.value.code == 2
        return
    assert main(argv) == 1
    assert message in capsys.readouterr().err
    assert list((tmp_path / "u").iterdir()) == []
