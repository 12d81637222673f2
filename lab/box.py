"""Build the Debian 12 vagrant-lxc box locally (no Vagrant Cloud) and add it to Vagrant.

The box file is cached in .lab/boxes/ under a name that carries a hash of this
module, so a change to the recipe rebuilds it and an unchanged recipe costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from lab import config
from lab.shell import LabError, log, run, timed

SUITE = "bookworm"
INCLUDE = (
    "systemd",
    "systemd-sysv",
    "openssh-server",
    "sudo",
    "iproute2",
    "ifupdown",
    "procps",
    "python3",
    "libnss-myhostname",
    "dbus",
)
TEMPLATE = Path(__file__).with_name("lxc-template")  # unpack once, copy per container
BUILD_FORMAT = 3  # bump when build() packs the box differently
VAGRANT_PUBKEY_GLOB = "/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub"

LXC_CONFIG = """\
lxc.include = /usr/share/lxc/config/debian.common.conf
lxc.apparmor.profile = unconfined
lxc.tty.max = 0
lxc.arch = amd64
"""

# Runs inside the chroot. Each fix is one the testbed found necessary (see lab/README.md).
ROOTFS_FIXES = r"""
set -eu
useradd --create-home --shell /bin/bash --user-group vagrant
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/vagrant
chmod 0440 /etc/sudoers.d/vagrant
install -d -m 0700 -o vagrant -g vagrant /home/vagrant/.ssh
install -m 0600 -o vagrant -g vagrant /tmp/vagrant.pub /home/vagrant/.ssh/authorized_keys
rm -f /tmp/vagrant.pub

# LXC configures eth0; dhcp here would block boot ~90 s on dhclient.
cat > /etc/network/interfaces <<'NET'
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet manual
NET

# Every guest generates its own host keys at first boot.
rm -f /etc/ssh/ssh_host_*
mkdir -p /etc/systemd/system/ssh.service.d
cat > /etc/systemd/system/ssh.service.d/host-keys.conf <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
echo 'UseDNS no' > /etc/ssh/sshd_config.d/lab.conf

# debootstrap copies the build machine's name into the rootfs.
rm -f /etc/hostname
sed -i -E 's/^hosts:.*/hosts:          files myhostname/' /etc/nsswitch.conf
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > /etc/hosts
printf '# the lab has no DNS\n' > /etc/resolv.conf

for unit in systemd-timesyncd.service getty@tty1.service systemd-networkd-wait-online.service \
            console-getty.service; do
    ln -sf /dev/null "/etc/systemd/system/$unit"
done

# Smaller rootfs, faster container creation: no docs, man pages or translations.
cat > /etc/dpkg/dpkg.cfg.d/01-lab-nodoc <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
find /usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
find /usr/share/doc -mindepth 1 -type d -empty -delete
rm -rf /usr/share/man/* /usr/share/info/*
find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +

# Each container gets its own machine id at first boot.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*.log
"""


def recipe_hash() -> str:
    """Changes when what goes into the box changes (not when this module's other code does)."""
    recipe = json.dumps([SUITE, INCLUDE, LXC_CONFIG, ROOTFS_FIXES, TEMPLATE.read_text(), BUILD_FORMAT])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def box_path() -> Path:
    return config.BOX_DIR / f"bookworm-lxc-{recipe_hash()}.box"


def debian_mirror() -> str:
    """The Debian archive URI named by this machine's apt sources (never hard-coded)."""
    candidates: list[Path] = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in candidates:
        for stanza in path.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#")
            )
            fields = {k.strip(): v.strip() for k, v in fields.items()}
            suites = fields.get("Suites", "").split()
            if SUITE in suites and "deb" in fields.get("Types", "").split():
                return fields["URIs"].split()[0]
    sources_list = Path("/etc/apt/sources.list")
    if sources_list.exists():
        match = re.search(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", sources_list.read_text(), re.M)
        if match:
            return match.group(1)
    raise LabError("no Debian bookworm mirror found in /etc/apt/sources.list.d/*.sources")


def vagrant_pubkey() -> Path:
    matches = sorted(Path("/").glob(VAGRANT_PUBKEY_GLOB.lstrip("/")))
    if not matches:
        raise LabError(f"Vagrant's insecure public key not found ({VAGRANT_PUBKEY_GLOB}); is vagrant installed?")
    return matches[-1]


def build(target: Path) -> None:
    """debootstrap a rootfs, apply the fixes, and pack it as a vagrant-lxc box at `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=config.STATE_DIR, prefix="box-build-") as tmp:
        work = Path(tmp)
        rootfs = work / "rootfs"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(INCLUDE),
                SUITE,
                rootfs,
                debian_mirror(),
            ]
        )
        shutil.copy(vagrant_pubkey(), rootfs / "tmp" / "vagrant.pub")
        run(["chroot", rootfs, "/bin/sh", "-c", ROOTFS_FIXES])
        # vagrant-lxc's template strips two path components: paths must start with ./rootfs/.
        run(["tar", "--numeric-owner", "-czf", work / "rootfs.tar.gz", "-C", work, "./rootfs"])
        (work / "metadata.json").write_text(
            json.dumps(
                {
                    "provider": "lxc",
                    "version": "1.0.0",
                    "built-with": f"debootstrap --variant=minbase {SUITE}",
                    "recipe": recipe_hash(),
                },
                indent=2,
            )
            + "\n"
        )
        (work / "lxc-config").write_text(LXC_CONFIG)
        shutil.copy(TEMPLATE, work / "lxc-template")
        (work / "lxc-template").chmod(0o755)
        partial = target.with_suffix(".partial")
        run(["tar", "-cf", partial, "-C", work, "metadata.json", "lxc-config", "lxc-template", "rootfs.tar.gz"])
        partial.rename(target)
    for stale in config.BOX_DIR.glob("bookworm-lxc-*.box"):
        if stale != target:
            stale.unlink()


def vagrant_home() -> Path:
    return Path(os.environ.get("VAGRANT_HOME", Path.home() / ".vagrant.d"))


def added_recipe() -> str | None:
    """The recipe hash of the box Vagrant has under BOX_NAME (None if absent or foreign)."""
    boxes = vagrant_home() / "boxes" / config.BOX_NAME.replace("/", "-VAGRANTSLASH-")
    for metadata in sorted(boxes.glob("*/lxc/metadata.json")):
        try:
            return json.loads(metadata.read_text()).get("recipe")
        except ValueError:
            return None
    return None


def vagrant_env() -> dict[str, str]:
    # No calls home: the lab's only network is its own bridge.
    return {"VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1", "VAGRANT_NO_COLOR": "1"}


def ensure() -> Path:
    """Build (if not cached) and add (if Vagrant lacks this recipe's box). Cheap when done.

    A fresh clone on a machine whose Vagrant already has the box skips the build too.
    """
    target = box_path()
    with timed("box (cached)"):
        cached = added_recipe() == recipe_hash()
    if cached:
        log(f"box {config.BOX_NAME} (recipe {recipe_hash()}) already added to Vagrant")
        return target
    with timed("box add (cached file)" if target.exists() else "box build+add"):
        if not target.exists():
            log(f"building box {target.name} (about a minute and a half)")
            build(target)
        run(["vagrant", "box", "add", "--force", "--name", config.BOX_NAME, target], env=vagrant_env())
    return target
