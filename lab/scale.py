"""The scale lab: 2 datacenters of N hosts each (default 128) plus 2 jump hosts, LXC directly, no Vagrant.

    python -m lab scale-up [--hosts-per-dc 128]     python -m lab scale-down     python -m lab scale-status

One base container (``ups-base``, dir-backed, never started) is unpacked from the lab's box rootfs
and prepared once in a chroot: the SSH key generated under .lab/scale/ for the ``vagrant`` user,
host keys made at first boot (ed25519 only: RSA key generation on 258 first boots costs minutes of
CPU on 2 cores), a volatile journal, and feedhandler's baseline release installed as the lab seeds it
(/opt/feedhandler/releases/3.0.0, ``current``, config, systemd unit, enabled).  Every host is then an
overlay snapshot clone (``lxc-copy -s -B overlay``): its own writable upper layer, so its own /opt,
/var/lib/upgrader, /etc/ssh host keys and journal, and a real systemd, sshd and feedhandler.service
(the component bench/rollback_compare.py rolls back, so bench/scale.py reuses its Ansible, pyinfra
and floor files).

Network (lab/scale_net.py): upsbr0 10.78.0.1/24 for the controller and the jump hosts' first legs
(.2 ny5, .3 ch2); upsny5 10.78.1.0/24 and upsch2 10.78.2.0/24 with no controller address; the jump
host's datacenter leg is .2 there, host i is .(10+i).  Static addresses, no NAT, no forwarding,
no lxc-net, apparmor unconfined.

The inventory is generated (inventories/scale.yml, git-ignored) with ``jump:`` per datacenter; the
known_hosts (.lab/scale/known_hosts) holds every host's and jump host's key, read via lxc-attach.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lab import box, config, lxc, scale_net
from lab.scale_hosts import BASE, JUMPS, PREFIX, SCALE_DIR, ScaleHost, machines
from lab.shell import LabError, log, run
from testapp.releases import baseline_config, systemd_unit

LXC_PATH = Path("/var/lib/lxc")
KEY = SCALE_DIR / "id_ed25519"
KNOWN_HOSTS = SCALE_DIR / "known_hosts"
INVENTORY = config.REPO / "inventories" / "scale.yml"
RECORD = SCALE_DIR / "scale.json"
COMPONENT, BASELINE = "feedhandler", config.BASELINES["feedhandler"]
STARTERS = 8  # lxc-start at once: each boot is CPU for systemd on 2 cores shared with everything else

BASE_CONFIG = """\
lxc.include = /usr/share/lxc/config/debian.common.conf
lxc.apparmor.profile = unconfined
lxc.tty.max = 0
lxc.arch = amd64
lxc.rootfs.path = dir:{rootfs}
lxc.uts.name = {name}
lxc.mount.entry = tmpfs tmp tmpfs nodev,nosuid,size=64M 0 0
"""

# Runs in the base rootfs (chroot): what makes a clone a small, real host.
PREPARE = r"""
set -eu
install -d -m 0700 -o vagrant -g vagrant /home/vagrant/.ssh
install -m 0600 -o vagrant -g vagrant /tmp/scale.pub /home/vagrant/.ssh/authorized_keys
rm -f /tmp/scale.pub
# Own host keys at first boot, ed25519 only (the box's drop-in makes every type; RSA is slow to make).
cat > /etc/systemd/system/ssh.service.d/host-keys.conf <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/bin/sh -c 'k=/etc/ssh/ssh_host_ed25519_key; test -s $k || ssh-keygen -q -t ed25519 -N "" -f $k'
ExecStartPre=/usr/sbin/sshd -t
UNIT
printf 'UseDNS no\nHostKey /etc/ssh/ssh_host_ed25519_key\n' > /etc/ssh/sshd_config.d/lab.conf
mkdir -p /etc/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=8M\n' > /etc/systemd/journald.conf.d/scale.conf
# the baseline release, laid out as lab/seed.py lays it out
c=$1 v=$2
rm -rf /opt/$c /etc/$c /var/log/$c /var/lib/upgrader
mkdir -p /opt/$c/releases/$v /etc/$c /var/log/$c
tar -xzf /tmp/artifact.tar.gz -C /opt/$c/releases/$v --no-same-owner
ln -s releases/$v /opt/$c/current
install -m 0644 /tmp/$c.conf /etc/$c/$c.conf
install -m 0644 /tmp/$c.service /etc/systemd/system/$c.service
ln -sf /etc/systemd/system/$c.service /etc/systemd/system/multi-user.target.wants/$c.service
rm -f /tmp/artifact.tar.gz /tmp/$c.conf /tmp/$c.service
"""


def ensure_key() -> None:
    SCALE_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not KEY.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "upgrader-scale-lab", "-f", KEY])


def make_base() -> None:
    """ups-base from the box's rootfs.tar.gz, prepared in a chroot (skipped if it exists)."""
    home = LXC_PATH / BASE
    if (home / "config").exists():
        return
    artifact = config.ARTIFACTS / f"{COMPONENT}-{BASELINE}.tar.gz"
    if not artifact.exists():
        raise LabError(f"{artifact} missing: run `python testapp/build.py` first")
    boxfile = box.box_path()
    if not boxfile.exists():
        raise LabError(f"no box at {boxfile}: run `python -m lab box` first")
    home.mkdir(parents=True, exist_ok=True)
    # The box is a tar holding rootfs.tar.gz (paths ./rootfs/..., numeric owners), unpacked as vagrant-lxc does.
    outer = subprocess.Popen(["tar", "-xOf", str(boxfile), "rootfs.tar.gz"], stdout=subprocess.PIPE)
    inner = subprocess.run(["tar", "--numeric-owner", "-xzf", "-", "-C", str(home)], stdin=outer.stdout, check=False)
    if outer.wait() != 0 or inner.returncode != 0:
        raise LabError(f"cannot unpack the rootfs of {boxfile} into {home}")
    rootfs = home / "rootfs"
    shutil.copy(KEY.with_suffix(".pub"), rootfs / "tmp" / "scale.pub")
    shutil.copy(artifact, rootfs / "tmp" / "artifact.tar.gz")
    (rootfs / "tmp" / f"{COMPONENT}.conf").write_text(baseline_config(COMPONENT))
    (rootfs / "tmp" / f"{COMPONENT}.service").write_text(systemd_unit(COMPONENT))
    run(["chroot", rootfs, "/bin/sh", "-c", PREPARE, "prepare", COMPONENT, BASELINE], quiet=True)
    (home / "config").write_text(BASE_CONFIG.format(rootfs=rootfs, name=BASE))


def net_config(host: ScaleHost) -> str:
    lines = []
    for i, (bridge, address, broadcast) in enumerate(host.legs):
        lines += [
            f"lxc.net.{i}.type = veth",
            f"lxc.net.{i}.link = {bridge}",
            f"lxc.net.{i}.flags = up",
            f"lxc.net.{i}.name = eth{i}",
            f"lxc.net.{i}.ipv4.address = {address}/24 {broadcast}",
        ]
    return "\n".join(lines) + "\n"


def clone(host: ScaleHost) -> None:
    home = LXC_PATH / host.container
    if not (home / "config").exists():
        run(["lxc-copy", "-n", BASE, "-N", host.container, "-s", "-B", "overlay"], quiet=True)
        with (home / "config").open("a") as fh:
            fh.write(net_config(host))
    if host.is_jump:  # sshd only: the app is masked in the jump host's own layer
        upper = home / "overlay" / "delta0" / "etc" / "systemd" / "system"
        upper.mkdir(parents=True, exist_ok=True)
        target = upper / f"{COMPONENT}.service"
        if not target.is_symlink():
            target.symlink_to("/dev/null")


def start(host: ScaleHost) -> None:
    if lxc.state(host.container) != "RUNNING":
        run(["lxc-start", "-n", host.container, "-d"], quiet=True)


READY = (
    f"test -s /etc/ssh/ssh_host_ed25519_key.pub && systemctl is-active -q ssh && "
    f'{{ [ "$1" = jump ] || systemctl is-active -q {COMPONENT}; }} && cat /etc/ssh/ssh_host_ed25519_key.pub'
)


def wait_ready(host: ScaleHost, seconds: float = 300) -> str:
    """The host's public host key, once sshd (and the app, on app hosts) run; read inside via lxc-attach."""
    deadline = time.monotonic() + seconds
    argv = [
        "lxc-attach",
        "-n",
        host.container,
        "--clear-env",
        "--set-var",
        f"PATH={lxc.GUEST_PATH}",
        "--",
        "/bin/sh",
        "-c",
        READY,
        "ready",
        "jump" if host.is_jump else "app",
    ]
    while True:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode == 0 and proc.stdout.startswith("ssh-ed25519 "):
            return " ".join(proc.stdout.split()[:2])
        if time.monotonic() > deadline:
            raise LabError(f"{host.container}: not ready after {seconds:.0f}s: {proc.stderr.strip()[-300:]}")
        time.sleep(0.5)


def write_inventory(hosts: list[ScaleHost], keys: dict[str, str]) -> None:
    import yaml

    known = []
    for h in hosts:
        known.append(f"{h.address} {keys[h.name]}")
    KNOWN_HOSTS.write_text("\n".join(known) + "\n")
    dcs: dict[str, dict] = {}
    zones = (("ny5", "America/New_York", ["XNYS", "XNAS"]), ("ch2", "America/Chicago", ["XCBO", "XNYS"]))
    for dc, tz, markets in zones:
        jump = next(h for h in hosts if h.is_jump and h.dc == dc)
        dcs[dc] = {
            "timezone": tz,
            "markets": markets,
            "jump": {"address": jump.address, "user": "vagrant"},
            "hosts": {h.name: {"address": h.address, "roles": ["risk"]} for h in hosts if h.dc == dc and not h.is_jump},
        }
    rel = os.path.relpath(SCALE_DIR, INVENTORY.parent)
    inventory = {
        "name": "scale-lab",
        "known_hosts": f"{rel}/known_hosts",
        "defaults": {"user": "vagrant", "port": 22, "ssh_key": f"{rel}/id_ed25519"},
        "roles": {"risk": [COMPONENT]},
        "datacenters": dcs,
    }
    INVENTORY.write_text(
        "# Generated by `python -m lab scale-up`; do not edit, do not commit.\n"
        + yaml.safe_dump(inventory, sort_keys=False)
    )


def memory(hosts: list[ScaleHost]) -> dict[str, float]:
    """Each container's memory cgroup usage (cgroup v1: memory.usage_in_bytes; v2: memory.current), MB."""
    out = {}
    for h in hosts:
        for path in (
            Path(f"/sys/fs/cgroup/memory/lxc.payload.{h.container}/memory.usage_in_bytes"),
            Path(f"/sys/fs/cgroup/lxc.payload.{h.container}/memory.current"),
        ):
            if path.exists():
                out[h.name] = int(path.read_text()) / 2**20
                break
    return out


def up(per_dc: int) -> dict:
    hosts = machines(per_dc)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    scale_net.prepare_kernel(len(hosts))
    scale_net.up()
    ensure_key()
    make_base()
    timings["base_s"] = time.monotonic() - t0
    t = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as ex:
        list(ex.map(clone, hosts))
    timings["clone_s"] = time.monotonic() - t
    t = time.monotonic()
    with ThreadPoolExecutor(max_workers=STARTERS) as ex:
        list(ex.map(start, hosts))
    timings["start_s"] = time.monotonic() - t
    t = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as ex:
        keys = dict(zip([h.name for h in hosts], ex.map(wait_ready, hosts), strict=True))
    timings["ready_s"] = time.monotonic() - t
    scale_net.isolate()
    write_inventory(hosts, keys)
    timings["total_s"] = time.monotonic() - t0
    mem = memory(hosts)
    app = [v for k, v in mem.items() if not k.endswith("-jump")]
    record: dict[str, Any] = {
        "hosts_per_dc": per_dc,
        "hosts": len(hosts) - len(JUMPS),
        "jump_hosts": len(JUMPS),
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "memory_mb": {
            "per_app_host_mean": round(sum(app) / max(1, len(app)), 1),
            "per_app_host_min": round(min(app, default=0), 1),
            "per_app_host_max": round(max(app, default=0), 1),
            "all_containers_total": round(sum(mem.values()), 1),
        },
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RECORD.write_text(json.dumps(record, indent=2) + "\n")
    log(
        f"scale lab up: {record['hosts']} hosts + {record['jump_hosts']} jump hosts in {timings['total_s']:.0f}s; "
        f"memory per host {record['memory_mb']['per_app_host_mean']} MB; inventory {INVENTORY}"
    )
    return record


def containers() -> list[str]:
    out = run(["lxc-ls", "-1"], capture=True, quiet=True).stdout
    return sorted(n for n in out.split() if n.startswith(PREFIX))


def down() -> None:
    """Every ups- container (clones first, the base last), then the bridges and routes."""
    names = containers()
    clones = [n for n in names if n != BASE]

    def destroy(name: str) -> None:
        run(["lxc-stop", "-n", name, "-k"], check=False, quiet=True, capture=True)
        run(["lxc-destroy", "-n", name], quiet=True, capture=True)

    with ThreadPoolExecutor(max_workers=8) as ex:
        list(ex.map(destroy, clones))
    if BASE in names:
        destroy(BASE)
    scale_net.down()
    INVENTORY.unlink(missing_ok=True)
    check_down()


def check_down() -> None:
    left = containers()
    bridges = scale_net.present()
    if left or bridges:
        raise LabError(f"scale lab not fully down: containers {left}, bridges {bridges}")
    log("scale lab down: no ups- containers, no ups* bridges")


def status() -> None:
    names = containers()
    running = [n for n in names if lxc.state(n) == "RUNNING"]
    print(f"{len(names)} ups- containers ({len(running)} running); bridges: {', '.join(scale_net.present()) or 'none'}")
    if RECORD.exists():
        print(RECORD.read_text())
