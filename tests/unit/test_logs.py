"""Logging configured once: human lines on stderr by default, JSON lines with --log-format json, a file if asked."""

from __future__ import annotations

import argparse
import io
import json
import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from upgrader.cli import logs

REPO = Path(__file__).resolve().parents[2]


def configured(**options: object) -> io.StringIO:
    stream = io.StringIO()
    logs.configure(
        argparse.Namespace(**{"verbose": 0, "quiet": 0, "log_file": None, "log_format": None, **options}), stream
    )
    return stream


@pytest.fixture(autouse=True)
def restore_logging() -> object:
    saved = logging.getLogger().handlers[:]
    yield
    logging.getLogger().handlers[:] = saved


def test_human_lines_and_levels() -> None:
    stream = configured()
    logging.getLogger("upgrader.transport").warning("ny5-1: connect failed (%s); retrying", "timeout")
    logging.getLogger("upgrader.engine").info("hidden at the default level")
    assert stream.getvalue() == "upgrader: warning: ny5-1: connect failed (timeout); retrying\n"
    stream = configured(verbose=1)
    logging.getLogger("upgrader.engine").info("shown with -v")
    assert "upgrader: info: shown with -v" in stream.getvalue()
    stream = configured(quiet=1)
    logging.getLogger("upgrader.engine").warning("not with -q")
    assert stream.getvalue() == ""


def test_json_lines_and_log_file(tmp_path: Path) -> None:
    stream = configured(log_format="json", log_file=tmp_path / "upgrader.log")
    logging.getLogger("upgrader.transport").warning("ny5-1: retrying")
    try:
        raise OSError("boom")
    except OSError:
        logging.getLogger("upgrader.engine").exception("with a traceback")
    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]  # every line is JSON, the traceback inside its record
    assert [(r["level"], r["message"]) for r in records] == [
        ("warning", "ny5-1: retrying"),
        ("error", "with a traceback"),
    ]
    assert "OSError: boom" in records[1]["exception"]
    assert [json.loads(line)["message"] for line in (tmp_path / "upgrader.log").read_text().splitlines()] == [
        "ny5-1: retrying",
        "with a traceback",
    ]


def test_every_stderr_line_of_a_failing_rollback_is_json(tmp_path: Path) -> None:
    """A real rollback toward a loopback port nothing listens on: retry warnings and the error, all JSON."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the rollback: connections are refused
    inventory = tmp_path / "inv.yml"
    inventory.write_text(f"""\
name: t
known_hosts: {tmp_path / "known_hosts"}
roles: {{oe: [ordergw]}}
datacenters:
  ny5:
    timezone: America/New_York
    hosts:
      ny5-1: {{address: 127.0.0.1, port: {port}, roles: [oe], user: nobody}}
""")
    (tmp_path / "known_hosts").write_text("")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "upgrader",
            "--state-dir",
            str(tmp_path / "state"),
            "rollback",
            "ordergw",
            "-i",
            str(inventory),
            "--reason",
            "test",
            "--yes",
            "--log-format",
            "json",
            "--playbook",
            str(REPO / "playbooks" / "ordergw-5.2.0.yml"),
            "--connect-timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode != 0
    lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]  # raises on any bare line
    assert any(r.get("level") == "warning" and "retrying" in r["message"] for r in records), lines
    assert any(r.get("level") == "error" for r in records), lines
