"""What is on a lab host, read with pytest-testinfra (independently of upgrader's own agent)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import testinfra


@dataclass(frozen=True)
class Component:
    current: str | None
    active: bool
    reported: str | None
    schema: int | None
    staged: tuple[str, ...]
    started_at: str | None


def component(host: testinfra.host.Host, name: str) -> Component:
    link = host.run("readlink /opt/%s/current", name)
    current = link.stdout.strip().removeprefix("releases/") if link.rc == 0 else None
    active = host.run("systemctl is-active %s.service", name).stdout.strip() == "active"
    port = {"feedhandler": 9101, "ordergw": 9102, "riskgw": 9103}[name]
    probe = host.run(
        "python3 -c %s",
        f"import urllib.request,sys;sys.stdout.write(urllib.request.urlopen("
        f"'http://127.0.0.1:{port}/health',timeout=2).read().decode())",
    )
    body = json.loads(probe.stdout) if probe.rc == 0 and probe.stdout.strip() else {}
    listing = host.run("ls -1 /opt/%s/releases", name).stdout.split()
    return Component(
        current,
        active,
        body.get("version"),
        body.get("config_schema"),
        tuple(sorted(v for v in listing if not v.startswith("."))),
        body.get("started_at"),
    )


def host_journal(host: testinfra.host.Host, name: str) -> list[dict]:
    out = host.run("sudo cat /var/lib/upgrader/%s/journal.jsonl", name)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()] if out.rc == 0 else []


def lock(host: testinfra.host.Host, name: str) -> dict | None:
    out = host.run("sudo cat /var/lib/upgrader/%s/lock.json", name)
    return json.loads(out.stdout) if out.rc == 0 and out.stdout.strip() else None


def assert_on(vm_host, hosts, name: str, version: str) -> None:  # type: ignore[no-untyped-def]
    """Every host on ``version``, its service running and reporting that version."""
    for h in hosts:
        state = component(vm_host(h), name)
        assert (state.current, state.active, state.reported) == (version, True, version), (h, state)


def assert_unlocked(vm_host, hosts, name: str) -> None:  # type: ignore[no-untyped-def]
    assert [h for h in hosts if lock(vm_host(h), name)] == []
