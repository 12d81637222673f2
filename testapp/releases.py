"""The test application's components, releases and the files a host needs besides a release.

Data only (plus text templates), shared by testapp/build.py and the lab's seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PORTS = {"feedhandler": 9101, "ordergw": 9102, "riskgw": 9103}
BASELINES = {"feedhandler": "3.0.0", "ordergw": "5.0.0", "riskgw": "2.4.0"}

# Component-specific settings in the baseline (schema 1) config.
FLAVOUR = {
    "feedhandler": {"feed": {"venues": "XNYS,XNAS,XCBO", "multicast_group": "239.1.1.1"}},
    "ordergw": {"session": {"sender_comp_id": "UPGRADER", "heartbeat_s": "30"}},
    "riskgw": {"limits": {"max_order_qty": "10000"}},
}

OK = {"ok": True}


@dataclass(frozen=True)
class Release:
    component: str
    version: str
    behaviour: dict = field(default_factory=lambda: dict(OK))
    config_schema: int = 1
    migration: dict = field(default_factory=dict)  # {"add": {section: {key: value}}}
    extra_members: tuple[str, ...] = ()  # names from build.HOSTILE_MEMBERS
    wrong_published_sha256: bool = False

    @property
    def filename(self) -> str:
        return f"{self.component}-{self.version}.tar.gz"

    def release_json(self) -> dict:
        data = {
            "component": self.component,
            "version": self.version,
            "behaviour": self.behaviour,
            "config_schema": self.config_schema,
        }
        if self.migration:
            data["migration"] = self.migration
        return data


ORDERGW_V2 = {"add": {"session": {"cancel_on_disconnect": "true"}}}
RISKGW_V2 = {"add": {"limits": {"max_notional": "5000000"}}}


def _broken(label: str, behaviour: dict, **kwargs: Any) -> Release:
    return Release("ordergw", f"5.1.1+{label}", behaviour, **kwargs)


RELEASES: tuple[Release, ...] = (
    Release("feedhandler", "3.0.0"),
    Release("feedhandler", "3.1.0"),
    Release("feedhandler", "3.2.0"),
    Release("ordergw", "5.0.0"),
    Release("ordergw", "5.1.0"),
    Release("ordergw", "5.2.0", config_schema=2, migration=ORDERGW_V2),
    Release("ordergw", "5.1.0_b7"),  # a vendor build number: PEP 440 would read it as the pre-release 5.1.0b7
    Release("riskgw", "2.4.0"),
    Release("riskgw", "2.5.0", config_schema=2, migration=RISKGW_V2),
    _broken("healthfail", {"health_fail": True}),
    _broken("crash", {"crash_after": 4}),
    _broken("nostart", {"no_start": True}),
    _broken("wrongver", {"wrong_version": "5.1.0"}),
    _broken("badmigrate", {"migrate_fail": True}, config_schema=2, migration=ORDERGW_V2),
    _broken("hangstop", {"hang_on_stop": True}),
    _broken("slowstart", {"slow_start": 8}),
    _broken("badsum", dict(OK), wrong_published_sha256=True),
    _broken("traversal", {"hostile_member": "../evil"}, extra_members=("traversal",)),
    _broken("abspath", {"hostile_member": "/tmp/evil"}, extra_members=("abspath",)),
    _broken("symlinkout", {"hostile_member": "symlinks out of the release"}, extra_members=("symlinkout",)),
)


def baseline_config(component: str) -> str:
    """/etc/<component>/<component>.conf as the baseline (schema 1) expects it."""
    sections = {
        "server": {"port": str(PORTS[component])},
        "app": {"schema": "1", "name": component},
        "log": {"file": f"/var/log/{component}/{component}.log"},
        **FLAVOUR[component],
    }
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {value}" for key, value in values.items())
        lines.append("")
    return "\n".join(lines)


def systemd_unit(component: str) -> str:
    """/etc/systemd/system/<component>.service; it points at `current`, so it outlives releases."""
    return f"""\
[Unit]
Description=Vendor {component} (upgrader test application)
After=network.target

[Service]
Type=simple
ExecStart=/opt/{component}/current/bin/{component} --config /etc/{component}/{component}.conf
Restart=no
TimeoutStopSec=5
KillMode=mixed

[Install]
WantedBy=multi-user.target
"""
