"""Plans built from plain dicts (no files): small playbooks and inventories for engine and property tests."""

from __future__ import annotations

from typing import Any

from upgrader.models.inventory import Inventory
from upgrader.models.plan import Plan, SourceRef
from upgrader.models.playbook import Playbook
from upgrader.planning.planner import facts_from_inventory, make_plan

SHA = "a" * 64


def playbook(**sections: Any) -> Playbook:
    data: dict[str, Any] = {
        "component": "app",
        "vendor": "Example Vendor",
        "version": "2.0.0",
        "artifact": {"file": "app-2.0.0.tar.gz", "sha256": SHA},
        "upgrade_from": ">=1.0,<2.0",
        "install": {"root": "/opt/app"},
        "service": {"systemd": "app.service"},
        "checks": [{"name": "port", "tcp": {"port": 9000}}],
        "canary": {"hosts": 0},
        "rollout": {"batch": 1},
        "rollback": {"on_failure": "host"},
    }
    for key, value in sections.items():
        data[key] = {**data[key], **value} if isinstance(data.get(key), dict) else value
    return Playbook.model_validate(data)


def inventory(
    datacenters: dict[str, list[str]], groups: dict[str, Any] | None = None, canaries: set[str] | None = None
) -> Inventory:
    address = iter(range(1, 60000))
    dcs = {
        dc: {
            "hosts": {
                h: {
                    "address": f"10.{(n := next(address)) // 250}.{n % 250}.1",
                    "roles": ["app"],
                    "installed": {"app": "1.0.0"},
                    "canary": h in (canaries or set()),
                }
                for h in hosts
            }
        }
        for dc, hosts in datacenters.items()
    }
    data: dict[str, Any] = {
        "name": "fleet",
        "defaults": {"user": "deploy"},
        "roles": {"app": ["app"]},
        "datacenters": dcs,
    }
    if groups:
        data["groups"] = groups
    return Inventory.model_validate(data)


def plan(pb: Playbook, inv: Inventory) -> Plan:
    ref = SourceRef(path="playbook.yml", sha256="0" * 64)
    return make_plan(
        pb,
        inv,
        facts_from_inventory(inv),
        playbook_ref=ref,
        inventory_ref=SourceRef(path="inventory.yml", sha256="0" * 64),
    )
