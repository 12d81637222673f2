"""Running the real `upgrader` command against the lab, and writing lab playbooks for any test release."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.version import Version

from lab import config

SATURDAY = "2026-11-28T02:00:00-05:00"  # inside the weekend window, every market closed
# A simulated time is a guard override (break-glass): it needs a reason, and is audited and notified.
WEEKEND = ("--now", SATURDAY, "--reason", "lab: the weekend window, simulated")
PORTS = {"feedhandler": 9101, "ordergw": 9102, "riskgw": 9103}


def artifact(component: str, version: str) -> dict[str, Any]:
    index = json.loads((config.ARTIFACTS / "index.json").read_text())
    entries = index if isinstance(index, list) else index["artifacts"]
    for entry in entries:
        if entry["component"] == component and entry["version"] == version:
            return entry
    raise KeyError(f"{component} {version} not in {config.ARTIFACTS / 'index.json'}")


def playbook(
    component: str,
    version: str,
    *,
    upgrade_from: str | None = None,
    sha256: str | None = None,
    canary: dict[str, Any] | None = None,
    rollout: dict[str, Any] | None = None,
    rollback: str = "wave",
    via: list[dict[str, Any]] | None = None,
    migrate: bool = False,
    requires: dict[str, str] | None = None,
    checks: list[dict[str, Any]] | None = None,
    service: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    art = artifact(component, version)
    port = PORTS[component]
    data: dict[str, Any] = {
        "component": component,
        "vendor": "Lab Vendor",
        "version": version,
        "artifact": {"file": art["file"], "sha256": sha256 or art["sha256"]},
        # Any older release may upgrade straight to it (a test release must not accept itself).
        "upgrade_from": upgrade_from or f"<{Version(version).public}",
        "install": {
            "root": f"/opt/{component}",
            "keep_releases": 3,
            "config_files": [f"/etc/{component}/{component}.conf"],
        },
        "service": service or {"systemd": f"{component}.service", "start_timeout": "15s", "stop_timeout": "15s"},
        "prechecks": {"min_free_disk_mb": 10},
        "checks": checks
        or [
            {
                "name": "health",
                "http": {"url": f"http://127.0.0.1:{port}/health", "status": 200, "body": '"status": "ok"'},
                "timeout": "1s",
                "retries": 12,
                "interval": "250ms",
            },
            {
                "name": "reports-version",
                "version": {"url": f"http://127.0.0.1:{port}/health"},
                "retries": 2,
                "interval": "250ms",
            },
        ],
        "canary": {"scope": "datacenter", "hosts": 1, "bake": "6s", "bake_interval": "1s", **(canary or {})},
        "rollout": {
            "batch": 1,
            "max_in_flight_per_datacenter": 1,
            "datacenter_order": ["ny5", "ch2"],
            "max_failures": 1,
            **(rollout or {}),
        },
        "rollback": {"on_failure": rollback},
        "windows": {"maintenance": [{"start": "Fri 20:00", "end": "Sun 18:00", "timezone": "America/New_York"}]},
    }
    if via:
        data["via"] = via
    if migrate:
        data["migrate"] = {
            "command": ["{release}/bin/migrate-config", f"/etc/{component}/{component}.conf"],
            "timeout": "20s",
        }
    if requires:
        data["requires"] = requires
    data.update(extra)
    return data


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Upgrader:
    """`upgrader …` as an operator would run it, with its own state directory."""

    def __init__(self, state: Path, inventory: Path) -> None:
        self.state = state
        self.inventory = inventory
        self.env = {
            **os.environ,
            "UPGRADER_STATE_DIR": str(state),
            "UPGRADER_ARTIFACTS": str(config.ARTIFACTS),
            "UPGRADER_OPERATOR": "pytest",
        }

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "upgrader", *args]

    def __call__(self, *args: str, timeout: float = 300) -> Run:
        started = time.monotonic()
        proc = subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            cwd=config.REPO,
            stdin=subprocess.DEVNULL,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)

    def apply(self, playbook: Path, *extra: str, timeout: float = 300) -> Run:
        return self(
            "apply",
            str(playbook),
            "-i",
            str(self.inventory),
            "--yes",
            *WEEKEND,
            "--log-format",
            "plain",
            *extra,
            timeout=timeout,
        )

    def start_apply(self, playbook: Path, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(
                "apply", str(playbook), "-i", str(self.inventory), "--yes", *WEEKEND, "--log-format", "json", *extra
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=config.REPO,
            stdin=subprocess.DEVNULL,
        )

    def runs(self) -> list[Path]:
        base = self.state / "runs"
        return sorted(base.iterdir()) if base.exists() else []

    def journal(self, run: Path | None = None) -> list[dict[str, Any]]:
        run = run or self.runs()[-1]
        lines = (run / "journal.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 120) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs()
            if runs and (runs[-1] / "journal.jsonl").exists():  # the run directory comes a moment before it
                entries = self.journal()
                if predicate(entries):
                    return entries
            time.sleep(0.1)
        raise TimeoutError("journal never reached the expected point")


def kill9(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
