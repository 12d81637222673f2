"""`python -m lab CMD`: the lab's command line (same commands as `invoke lab.CMD`)."""

from __future__ import annotations

import argparse
import sys

from lab import box, control, faults, install, net, reliability
from lab.shell import LabError

FAULTS = ("kill", "start", "freeze", "unfreeze", "cut", "restore", "sshd_stop", "sshd_start", "heal")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="apt packages and host LXC settings")
    sub.add_parser("box", help="build (or reuse) and add the Debian 12 vagrant-lxc box")
    sub.add_parser("net-up", help="upgbr0 (10.77.5.1/24) and a bridge per datacenter (no controller address; no NAT)")
    sub.add_parser("net-down", help="remove the bridges")
    up = sub.add_parser("up", help="net-up + box + vagrant up + inventory + seed")
    up.add_argument("--hosts-per-dc", type=int, help="default: $UPGRADER_LAB_HOSTS_PER_DC or 2")
    up.add_argument("--no-seed", action="store_true", help="do not reset hosts to the baseline")
    sub.add_parser("inventory", help="write inventories/vagrant.yml and .lab/known_hosts")
    for name in ("seed", "reset"):
        cmd = sub.add_parser(name, help="put hosts back to the baseline releases")
        cmd.add_argument("--hosts", nargs="*", help="host names (default: all)")
    sub.add_parser("down", help="destroy all lab machines and the bridges")
    sub.add_parser("check-down", help="fail unless no lab container and no lab bridge remain")
    sub.add_parser("status", help="containers and component health")
    sub.add_parser("timings", help="print recorded timings")
    sub.add_parser("artifacts", help="build the test application's release tarballs")
    scale_up = sub.add_parser("scale-up", help="the scale lab: 2 datacenters of N LXC hosts + 2 jump hosts")
    scale_up.add_argument("--hosts-per-dc", type=int, default=128)
    sub.add_parser("scale-down", help="remove every ups- container and ups* bridge")
    sub.add_parser("scale-status", help="the scale lab's containers, bridges and last bring-up record")
    table = sub.add_parser(
        "reliability", help="the reliability table: copy the last test run's rows to docs/, or check docs/ is current"
    )
    table.add_argument("action", choices=("update", "check"))
    fault = sub.add_parser("fault", help="inject or undo a fault on a host")
    fault.add_argument("action", choices=FAULTS)
    fault.add_argument("host", help="e.g. ny5-1")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        match args.command:
            case "install":
                install.ensure()
            case "box":
                install.lxc_settings()
                box.ensure()
            case "net-up":
                net.up()
            case "net-down":
                net.down()
            case "up":
                control.up(args.hosts_per_dc, reseed=not args.no_seed)
            case "inventory":
                control.write_inventory()
            case "seed" | "reset":
                control.reset(args.hosts)
            case "down":
                control.down()
            case "check-down":
                control.check_down()
            case "status":
                control.status()
            case "timings":
                control.timings()
            case "artifacts":
                control.build_artifacts()
            case "scale-up" | "scale-down" | "scale-status":
                from lab import scale

                {
                    "scale-up": lambda: scale.up(args.hosts_per_dc),
                    "scale-down": scale.down,
                    "scale-status": scale.status,
                }[args.command]()
            case "fault":
                getattr(faults, args.action)(args.host)
            case "reliability" if args.action == "update":
                print(reliability.update())
            case "reliability":
                if found := reliability.check():
                    print("\n".join(f"lab: reliability: {line}" for line in found), file=sys.stderr)
                    return 1
                print("lab: reliability: docs/reliability.* are current")
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
