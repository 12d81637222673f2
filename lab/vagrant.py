"""Thin wrappers around the vagrant CLI (always run from the repo root, never calling home)."""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from lab import config
from lab.box import vagrant_env
from lab.shell import run


def env(per_dc: int) -> dict[str, str]:
    return {**vagrant_env(), config.HOSTS_PER_DC_ENV: str(per_dc), "VAGRANT_CWD": str(config.REPO)}


def up(per_dc: int) -> None:
    run(["vagrant", "up", "--provider=lxc", "--parallel"], env=env(per_dc), cwd=config.REPO)


def destroy(per_dc: int) -> None:
    run(["vagrant", "destroy", "-f", "--parallel"], env=env(per_dc), cwd=config.REPO)


def status(per_dc: int) -> str:
    return run(["vagrant", "status"], env=env(per_dc), cwd=config.REPO, capture=True, check=False).stdout


@dataclass(frozen=True)
class SshEntry:
    host: str
    address: str
    port: int
    user: str
    identity_file: Path


def ssh_config(per_dc: int) -> dict[str, SshEntry]:
    """Parse `vagrant ssh-config` for every machine: host -> address, port, user, key."""
    out = run(["vagrant", "ssh-config"], env=env(per_dc), cwd=config.REPO, capture=True).stdout
    return parse_ssh_config(out)


def parse_ssh_config(text: str) -> dict[str, SshEntry]:
    blocks: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        value = " ".join(shlex.split(value.strip())) if value.strip() else ""
        if key.lower() == "host":
            current = blocks.setdefault(value, {})
        elif current is not None:
            current.setdefault(key.lower(), value)
    return {
        name: SshEntry(name, b["hostname"], int(b.get("port", 22)), b.get("user", "vagrant"), Path(b["identityfile"]))
        for name, b in blocks.items()
    }


def known_machines() -> list[str]:
    """Machines Vagrant has state for (.vagrant/machines/*/lxc/id), whatever the current count."""
    root = config.REPO / ".vagrant" / "machines"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "lxc" / "id").exists())


def max_index(names: list[str]) -> int:
    indexes = [int(n.rsplit("-", 1)[1]) for n in names if n.rsplit("-", 1)[-1].isdigit()]
    return max(indexes, default=0)


def remember(per_dc: int) -> None:
    config.STATE_DIR.mkdir(parents=True, exist_ok=True)
    config.LAB_STATE.write_text(json.dumps({"hosts_per_dc": per_dc}) + "\n")


def remembered() -> int | None:
    try:
        return int(json.loads(config.LAB_STATE.read_text())["hosts_per_dc"])
    except (FileNotFoundError, ValueError, KeyError):
        return None


def current_per_dc() -> int:
    """Hosts per DC of the lab as brought up (falls back to the environment / default)."""
    if config.HOSTS_PER_DC_ENV in os.environ:
        return config.hosts_per_dc()
    return remembered() or config.DEFAULT_HOSTS_PER_DC
