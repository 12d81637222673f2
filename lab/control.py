"""The lab's commands. `python -m lab CMD` and `invoke lab.CMD` both call these.

All of them are idempotent: running `up` on a running lab, or `down` on a lab that is
down, does only what is missing.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

from lab import box, config, install, inventory, lxc, net, seed, vagrant
from lab.shell import LabError, load_timings, log, run, timed


def ensure_host_ready() -> None:
    install.ensure()


def hosts_for(per_dc: int | None = None) -> list[config.Host]:
    return config.lab_hosts(vagrant.current_per_dc() if per_dc is None else per_dc)


def select(names: list[str] | None) -> list[config.Host]:
    hosts = hosts_for()
    if not names:
        return hosts
    return [config.host(n) for n in names]


def remove_stale_containers() -> None:
    """Destroy upg-* containers that this checkout's Vagrant does not own.

    A leftover container holding a lab address shows up only as endless
    "Authentication failure. Retrying..." during `vagrant up`.
    """
    owned = {
        (config.REPO / ".vagrant" / "machines" / name / "lxc" / "id").read_text().strip()
        for name in vagrant.known_machines()
    }
    for container in lxc.lab_containers():
        if container not in owned:
            log(f"destroying stale container {container} (not owned by this checkout's .vagrant)")
            run(["lxc-destroy", "-f", "-n", container])


def running(hosts: list[config.Host]) -> bool:
    return all(lxc.state(h.container) == "RUNNING" for h in hosts)


def up(per_dc: int | None = None, reseed: bool = True) -> None:
    """Bridges + box + `vagrant up` (jump hosts and hosts) + inventory + baseline releases on every host."""
    per_dc = config.hosts_per_dc() if per_dc is None else per_dc
    hosts = config.lab_hosts(per_dc)
    machines = config.machines(per_dc)
    install.lxc_settings()
    net.up()
    box.ensure()
    remove_stale_containers()
    if running(machines) and set(vagrant.known_machines()) >= {h.name for h in machines}:
        log(f"all {len(machines)} machines already running")
    else:
        with timed(f"vagrant up {len(hosts)} hosts + {len(machines) - len(hosts)} jumps"):
            vagrant.up(per_dc)
    net.isolate_datacenters()
    vagrant.remember(per_dc)
    name_hosts(machines)
    check_isolation(config.jump_hosts())
    write_inventory(per_dc)
    if reseed:
        seed.reset(hosts)


def check_isolation(jumps: list[config.Host]) -> None:
    """Refuse a lab whose jump hosts forward packets: the datacenters would not be isolated."""
    for jump in jumps:
        value = lxc.attach(jump.container, "cat /proc/sys/net/ipv4/ip_forward", timeout=30).stdout.decode().strip()
        if value != "0":
            raise LabError(f"{jump.name}: net.ipv4.ip_forward is {value}; the lab needs 0 (nothing here sets it)")


def name_hosts(hosts: list[config.Host]) -> None:
    """Give each guest its lab name (`ny5-1`), now and for later boots (vm.hostname is a trap)."""

    def name(host: config.Host) -> None:
        lxc.attach(
            host.container,
            f'[ "$(cat /etc/hostname 2>/dev/null)" = {host.name} ] || '
            f"echo {host.name} > /etc/hostname; hostname {host.name}",
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        list(pool.map(name, hosts))


def write_inventory(per_dc: int | None = None) -> None:
    per_dc = vagrant.current_per_dc() if per_dc is None else per_dc
    with timed("inventory"):
        inventory.write(vagrant.ssh_config(per_dc), config.lab_hosts(per_dc))


def reset(names: list[str] | None = None) -> None:
    seed.reset(select(names))


def close_ssh_masters() -> None:
    """End the OpenSSH ControlMaster processes the tests opened (each by its socket)."""
    if not config.SSH_CONFIG.exists():
        return
    for socket_path in config.STATE_DIR.glob("cm-*"):
        subprocess.run(
            ["ssh", "-F", str(config.SSH_CONFIG), "-o", f"ControlPath={socket_path}", "-O", "exit", "lab"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        socket_path.unlink(missing_ok=True)


def down() -> None:
    """Destroy every lab machine (whatever count it was brought up with) and the bridge."""
    per_dc = max(vagrant.current_per_dc(), vagrant.remembered() or 0, vagrant.max_index(vagrant.known_machines()))
    close_ssh_masters()
    count = len(lxc.lab_containers())
    with timed(f"down {count} hosts"):
        if vagrant.known_machines():
            # frozen containers cannot be destroyed
            for container in lxc.lab_containers():
                if lxc.state(container) == "FROZEN":
                    run(["lxc-unfreeze", "-n", container])
            vagrant.destroy(per_dc)
        for container in lxc.lab_containers():
            log(f"destroying leftover container {container}")
            run(["lxc-destroy", "-f", "-n", container])
        net.down()
    for path in (config.KNOWN_HOSTS, config.SSH_CONFIG, config.LAB_STATE):
        path.unlink(missing_ok=True)
    log("lab is down: no upg-* containers, no bridges")


def host_status(host: config.Host) -> dict:
    state = lxc.state(host.container)
    versions = {}
    if state == "RUNNING" and not host.is_jump:
        for component, body in seed.health(host).items():
            versions[component] = f"{body['version']} {body['status']}" if body else "down"
    return {"host": host.name, "container": host.container, "address": host.address, "state": state, **versions}


def status() -> list[dict]:
    """Bridges, containers (jump hosts first) and component health, printed as a table."""
    hosts = config.jump_hosts() + hosts_for()
    for bridge in net.bridges():
        shown = (
            "up " + (" ".join(net.addresses(bridge)) or "(no controller address)")
            if net.bridge_exists(bridge)
            else "absent"
        )
        print(f"bridge {bridge}: {shown}")
    others = [c for c in lxc.lab_containers() if c not in {h.container for h in hosts}]
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        rows = list(pool.map(host_status, hosts))
    columns = ["host", "container", "address", "state", *config.COMPONENTS]
    table = [columns] + [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    if others:
        print("other lab containers: " + " ".join(others))
    return rows


def timings() -> dict:
    data = load_timings()
    for label, entry in sorted(data.items()):
        print(f"{label:<28} {entry['seconds']:>7} s   ({entry['at']})")
    return data


def build_artifacts() -> None:
    from testapp import build

    index = build.build(config.ARTIFACTS)
    build.print_table(index, config.ARTIFACTS)


def check_down() -> None:
    """Fail unless the lab is completely down."""
    left = lxc.lab_containers()
    bridges = [b for b in net.bridges() if net.bridge_exists(b)]
    if left or bridges:
        raise LabError(f"lab not down: containers {left}, bridges {bridges}")
    print(json.dumps({"containers": [], "bridges": []}))
