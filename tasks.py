"""invoke tasks: `invoke --list`. The lab's commands live in lab/control.py; these only call them.

    invoke artifacts            build the test application's release tarballs
    invoke lab.up [--hosts-per-dc 8]
    invoke lab.reset [--hosts ny5-1,ch2-1]
    invoke lab.fault freeze ny5-1
    invoke lab.down
"""

from __future__ import annotations

from invoke import Collection, task

from lab import box as lab_box
from lab import control, faults, net
from lab import install as lab_install


def _hosts(hosts: str) -> list[str] | None:
    return [h for h in hosts.split(",") if h] or None


@task
def artifacts(c):
    """Build build/artifacts/*.tar.gz (+ .sha256, index.json), byte-reproducibly."""
    control.build_artifacts()


@task
def install(c):
    """apt-get install the lab's packages (if missing) and set host LXC defaults."""
    lab_install.ensure()


@task
def box(c):
    """Build (or reuse the cached) Debian 12 vagrant-lxc box and add it to Vagrant."""
    lab_install.lxc_settings()
    lab_box.ensure()


@task(name="net-up")
def net_up(c):
    """Create upgbr0 (10.77.5.1/24) and a bridge per datacenter without a controller address (no NAT)."""
    net.up()


@task(name="net-down")
def net_down(c):
    """Remove the lab bridges."""
    net.down()


@task(help={"hosts_per_dc": "hosts per datacenter (default $UPGRADER_LAB_HOSTS_PER_DC or 2)",
            "seed": "reset hosts to the baseline releases (default on)"})
def up(c, hosts_per_dc=None, seed=True):
    """Bridge + box + `vagrant up --provider=lxc` + inventory + baseline releases."""
    control.up(int(hosts_per_dc) if hosts_per_dc else None, reseed=seed)


@task
def inventory(c):
    """Write inventories/vagrant.yml (+ .lab/known_hosts, .lab/ssh_config) from `vagrant ssh-config`."""
    control.write_inventory()


@task(help={"hosts": "comma-separated host names (default: all)"})
def reset(c, hosts=""):
    """Put hosts back to the baseline releases (parallel, via lxc-attach)."""
    control.reset(_hosts(hosts))


@task(help={"hosts": "comma-separated host names (default: all)"})
def seed(c, hosts=""):
    """Same as reset."""
    control.reset(_hosts(hosts))


@task
def down(c):
    """Destroy every lab machine (jump hosts too), the bridges and the generated known_hosts."""
    control.down()


@task
def status(c):
    """Bridge, containers and the health of each component."""
    control.status()


@task
def timings(c):
    """Print the recorded timings (.lab/timings.json)."""
    control.timings()


FAULT_ACTIONS = "kill|start|freeze|unfreeze|cut|restore|sshd_stop|sshd_start|heal"


@task(positional=["action", "host"], help={"action": FAULT_ACTIONS, "host": "e.g. ny5-1 or ny5-jump"})
def fault(c, action, host):
    """Inject (or undo) a fault on one host."""
    getattr(faults, action.replace("-", "_"))(host)


lab = Collection("lab", install, box, net_up, net_down, up, inventory, reset, seed, down, status, timings, fault)
ns = Collection(artifacts, lab)
