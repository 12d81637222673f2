"""A small fleet of fake hosts with a playbook, an inventory, real release tarballs and the plan for them.

    s = Scenario.build(tmp_path, {"ny": ["ny-1", "ny-2"], "ch": ["ch-1"]}, bad={"ny-2"}, on_failure="wave")
    outcome, entries = s.apply()          # the real engine (engine.apply.Apply) over s.hosts.pool()
    s.hosts["ny-1"].current(ROOT)         # what is on the host afterwards

Every host starts on FROM (its release's ``health`` file says ``ok``).  The target release TO is
one tarball; a host named in ``bad`` has a verify check that fails on TO only (its health file is
read through ``/opt/app/current/health``, and TO's says ``bad`` on those hosts: the tarball is the
same, the host's ``/etc/app/bad`` marker decides).  ``crash`` hosts fail at service start instead.
Extra playbook keys (``playbook={...}``) are merged in at the top level (a dict merges one level).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.fakes.agent_host import FakeHosts, release_tarball
from upgrader.commands.inputs import load_inputs
from upgrader.engine.apply import Apply, Outcome, Recovery
from upgrader.engine.progress import Lines
from upgrader.journal import Journal
from upgrader.models.plan import Plan
from upgrader.planning.planner import facts_from_inventory, make_plan
from upgrader.vocabulary import Event

ROOT = "/opt/app"
UNIT = "app.service"
FROM, TO = "5.1.0", "5.2.0"
# The health check passes unless the host carries /etc/app/bad and runs TO (a release bad on that host).
HEALTH = ["/bin/sh", "-c", 'test "$(cat "$0")" = ok', "/opt/app/current/health"]
START = '[ ! -e "$TREE/etc/app/crash" ] || [ "$(readlink "$TREE/opt/app/current")" != releases/5.2.0 ]'


def _playbook(sha: str, extra: dict[str, Any]) -> dict[str, Any]:
    book: dict[str, Any] = {
        "component": "app",
        "vendor": "Example Vendor",
        "version": TO,
        "artifact": {"file": f"app-{TO}.tar.gz", "sha256": sha},
        "upgrade_from": ">=5.1,<5.2",
        "install": {"root": ROOT},
        "service": {"systemd": UNIT, "start_timeout": "5s", "stop_timeout": "5s"},
        "prechecks": {"min_free_disk_mb": 0},
        "checks": [
            {"name": "health", "command": {"argv": HEALTH}, "retries": 1, "interval": "50ms", "timeout": "2s"},
            {
                "name": "version",
                "version": {"argv": ["cat", "{release}/VERSION"]},
                "retries": 0,
                "interval": "50ms",
                "timeout": "2s",
            },
        ],
        "canary": {"hosts": 1, "bake": "200ms", "bake_interval": "100ms"},
        "rollout": {"batch": 1, "max_failures": 1},
        "rollback": {"on_failure": "host"},
    }
    for key, value in extra.items():
        book[key] = {**book[key], **value} if isinstance(value, dict) and isinstance(book.get(key), dict) else value
    return book


@dataclass
class Scenario:
    tmp: Path
    hosts: FakeHosts
    plan: Plan
    artifacts: Path
    playbook: Path
    inventory: Path
    runs: list[Journal] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        tmp: Path,
        datacenters: dict[str, list[str]],
        *,
        bad: set[str] | frozenset[str] = frozenset(),
        crash: set[str] | frozenset[str] = frozenset(),
        on_failure: str = "host",
        playbook: dict[str, Any] | None = None,
        groups: dict[str, Any] | None = None,
        **rollout: Any,
    ) -> Scenario:
        artifacts = tmp / "artifacts"
        sha = release_tarball(artifacts / f"app-{TO}.tar.gz", {"VERSION": TO + "\n", "health": "ok\n"})
        extra = dict(playbook or {})
        extra["rollback"] = {"on_failure": on_failure, **extra.get("rollback", {})}
        if rollout:
            extra["rollout"] = {**extra.get("rollout", {}), **rollout}
        book = _playbook(sha, extra)
        inventory = {
            "name": "fake",
            "defaults": {"user": "deploy"},
            "roles": {"app": ["app"]},
            "datacenters": {
                dc: {
                    "hosts": {
                        h: {"address": f"10.9.{i}.{j + 1}", "roles": ["app"], "installed": {"app": FROM}}
                        for j, h in enumerate(names)
                    }
                }
                for i, (dc, names) in enumerate(datacenters.items())
            },
        }
        if groups:  # redundancy groups: {name: {"hosts": [...], "max_unavailable": n}}
            inventory["groups"] = groups
        (tmp / "playbook.yml").write_text(yaml.safe_dump(book, sort_keys=False))
        (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
        hosts = FakeHosts(tmp / "hosts")
        for names in datacenters.values():
            for name in names:
                h = hosts.add(name)
                h.install(ROOT, FROM, {"VERSION": FROM + "\n", "health": "ok\n"})
                h.unit(UNIT, start=START)
                if name in bad:  # TO on this host reads "bad": the health file is per host, after the switch
                    h.path("/etc/app").mkdir(parents=True, exist_ok=True)
                    h.path("/etc/app/bad").write_text("")
                    h.before_program.append(_spoil_after_switch)
                if name in crash:
                    h.path("/etc/app").mkdir(parents=True, exist_ok=True)
                    h.path("/etc/app/crash").write_text("")
        s = cls(tmp, hosts, cls.plan_for(tmp), artifacts, tmp / "playbook.yml", tmp / "inventory.yml")
        return s

    @staticmethod
    def plan_for(tmp: Path) -> Plan:
        inputs = load_inputs(tmp / "playbook.yml", tmp / "inventory.yml")
        return make_plan(
            inputs.playbook.model,
            inputs.inventory.model,
            facts_from_inventory(inputs.inventory.model),
            playbook_ref=inputs.playbook_ref(),
            inventory_ref=inputs.inventory_ref(),
        )

    def journal(self, run_id: str | None = None) -> Journal:
        run_id = run_id or f"run-{len(self.runs) + 1}"
        journal = Journal.create(self.tmp / "state", run_id)
        journal.record(Event.RUN_START, kind="apply", component=self.plan.component, plan_hash=self.plan.content_hash)
        self.runs.append(journal)
        return journal

    def engine(self, journal: Journal | None = None, **kwargs: Any) -> Apply:
        return Apply(
            self.plan,
            self.hosts.pool(),
            journal or self.journal(),
            Lines("json", stream=io.StringIO()),
            artifacts=self.artifacts,
            operator="pytest",
            sleep=lambda _: None,
            **kwargs,
        )

    def apply(
        self, recovery: Recovery | None = None, journal: Journal | None = None, **kwargs: Any
    ) -> tuple[Outcome, list[dict[str, Any]]]:
        engine = self.engine(journal, **kwargs)
        try:
            outcome = engine.run(recovery)
        finally:
            engine.pool.close()
        return outcome, entries(engine.journal)

    def versions(self) -> dict[str, str | None]:
        return {name: h.current(ROOT) for name, h in self.hosts.hosts.items()}

    def close(self) -> None:
        self.hosts.close()


def entries(journal: Journal) -> list[dict[str, Any]]:
    return [json.loads(line) for line in journal.path.read_text().splitlines()]


def _spoil_after_switch(host: Any, program: dict[str, Any]) -> None:
    """A bad host: once TO is staged, its health file says 'bad' (the host's own defect, not the tarball's)."""
    health = host.path(f"{ROOT}/releases/{TO}/health")
    if health.exists() and health.read_text() != "bad\n":
        health.write_text("bad\n")
