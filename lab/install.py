"""Host packages and host-wide LXC settings the lab needs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from lab import config
from lab.shell import log, run

LXC_DEFAULT_CONF = Path("/etc/lxc/default.conf")
LXC_NET_DEFAULTS = Path("/etc/default/lxc-net")


def missing_packages(packages: tuple[str, ...] = config.APT_PACKAGES) -> list[str]:
    missing = []
    for name in packages:
        probe = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
        if probe.returncode != 0 or "install ok installed" not in probe.stdout:
            missing.append(name)
    return missing


def packages() -> None:
    """apt-get install what is missing (--no-install-recommends); nothing if all present."""
    missing = missing_packages()
    if not missing:
        log("host packages present: " + " ".join(config.APT_PACKAGES))
        return
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)


def lxc_settings() -> None:
    """This kernel has no AppArmor; and lxc-net must never run (it would add NAT and dnsmasq)."""
    if LXC_DEFAULT_CONF.exists():
        text = LXC_DEFAULT_CONF.read_text()
        fixed = re.sub(r"^lxc\.apparmor\.profile\s*=.*$", "lxc.apparmor.profile = unconfined", text, flags=re.M)
        if "lxc.apparmor.profile" not in fixed:
            fixed += "lxc.apparmor.profile = unconfined\n"
        if fixed != text:
            LXC_DEFAULT_CONF.write_text(fixed)
            log(f"{LXC_DEFAULT_CONF}: lxc.apparmor.profile = unconfined")
    if LXC_NET_DEFAULTS.exists():
        text = LXC_NET_DEFAULTS.read_text()
        fixed = re.sub(r"^USE_LXC_BRIDGE=.*$", 'USE_LXC_BRIDGE="false"', text, flags=re.M)
        if fixed != text:
            LXC_NET_DEFAULTS.write_text(fixed)
            log(f"{LXC_NET_DEFAULTS}: USE_LXC_BRIDGE=false (the lab uses its own bridge, no NAT)")


def ensure() -> None:
    packages()
    lxc_settings()
