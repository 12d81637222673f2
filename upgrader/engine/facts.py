"""Gathering facts from hosts in parallel: one agent round trip per host."""

from __future__ import annotations

from typing import Any

from upgrader.defaults import FACTS_TIMEOUT
from upgrader.engine import programs, remote
from upgrader.engine.pool import GroupResult, Pool
from upgrader.models.facts import ComponentFacts, Facts, HostFacts
from upgrader.models.inventory import Inventory
from upgrader.models.playbook import Playbook
from upgrader.planning.planner import iter_hosts, runs_component


def gather(
    pool: Pool,
    inventory: Inventory,
    spec: Playbook,
    hosts: list[str] | None = None,
    python: str = "python3",
    journal_lines: int = 0,
) -> tuple[Facts, dict[str, dict[str, Any]]]:
    """Facts for the hosts that run ``spec.component`` (or ``hosts``), and the raw agent answers."""
    names = (
        hosts
        if hosts is not None
        else [name for _, name, host in iter_hosts(inventory) if runs_component(inventory, host, spec.component)]
    )
    answers = probe(pool, names, spec.component, spec.install.root, programs.facts_op(spec, journal_lines), python)
    out: dict[str, HostFacts] = {}
    raw: dict[str, dict[str, Any]] = {}
    for host in names:
        res = answers[host].value
        if res is None or not res.ok:
            error = str(answers[host].error) if res is None else res.error
            out[host] = HostFacts(reachable=False, error=error)
            raw[host] = {"error": error}
            continue
        data = res.ops[0].data
        raw[host] = data
        out[host] = HostFacts(
            free_disk_mb=data.get("free_disk_mb"),
            components={
                spec.component: ComponentFacts(
                    installed=data.get("installed"),
                    staged=[v for v in data.get("staged", []) if _is_version(v)],
                    reported_version=data.get("reported_version"),
                    service=data.get("service"),
                    lock=data.get("lock"),
                )
            },
        )
    return Facts(inventory=inventory.name, hosts=out), raw


def probe(
    pool: Pool, hosts: list[str], component: str, root: str, op: dict[str, Any], python: str = "python3"
) -> GroupResult[remote.AgentResult]:
    def one(host: str) -> remote.AgentResult:
        return pool.session(host).call(
            component=component,
            root=root,
            run=None,
            ops=[op],
            timeout=FACTS_TIMEOUT,
            python=python,
            idempotent=True,
        )

    return pool.each(hosts, one)


def installed(pool: Pool, hosts: list[str], component: str, root: str, python: str = "python3") -> dict[str, HostFacts]:
    """Installed versions of another component (for `requires`), installed under ``root`` (its playbook's)."""
    op = {"op": "facts", "service": None, "version_check": None, "journal_lines": 0}
    answers = probe(pool, hosts, component, root, op, python)
    return {
        h: HostFacts(components={component: ComponentFacts(installed=r.ops[0].data.get("installed"))})
        for h, r in answers.succeeded.items()
        if r.ok
    }


def merge(base: Facts, extra: dict[str, HostFacts]) -> Facts:
    """Per-host union of component facts (for `requires` checks across components)."""
    hosts = dict(base.hosts)
    for name, hf in extra.items():
        if name in hosts and hosts[name].reachable and hf.reachable:
            hosts[name] = hosts[name].model_copy(update={"components": {**hosts[name].components, **hf.components}})
        else:
            hosts[name] = hf
    return Facts(inventory=base.inventory, hosts=hosts)


def _is_version(text: str) -> bool:
    """A release directory whose name is a version of some scheme (the facts keep it as it is named)."""
    from upgrader.models.types import MAX_VERSION_LENGTH
    from upgrader.versions import valid_in_some_scheme

    return len(text) <= MAX_VERSION_LENGTH and valid_in_some_scheme(text)
