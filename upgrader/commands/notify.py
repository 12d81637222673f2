"""`upgrader notify -i INVENTORY EVENT --message …`: send one event to the inventory's notify targets.

For what upgrader cannot say itself: a scheduled unit that failed before upgrader could report
(systemd's OnFailure=), and for trying the webhooks before the weekend.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from upgrader.engine.notifier import Notifier
from upgrader.errors import ExitCode, RefusedError
from upgrader.loading.inputs import load_inventory
from upgrader.notify import EVENTS

HELP = "send one notification to the inventory's webhooks (OnFailure= units, testing the hooks)"

EPILOG = """\
example:
  upgrader notify -i inventories/prod-na.yml failed --component ordergw --message "timer unit failed"

exit codes: 0 every target took it; 1 some target failed or is not configured (each is named), or bad input
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("event", choices=[str(k) for k in EVENTS], help="the kind of event")
    parser.add_argument("-i", "--inventory", type=Path, required=True, help="the inventory whose `notify` to use")
    parser.add_argument("--message", required=True, help="what happened, in one line")
    parser.add_argument("--component", default="-", help="the component it is about")
    parser.add_argument("--version", dest="release", default="-", help="the release it is about")
    parser.add_argument("--run", dest="run_id", default=None, help="the run it is about")


def run(args: argparse.Namespace) -> int:
    inventory = load_inventory(args.inventory).model
    if not inventory.notify:
        raise RefusedError(f"{args.inventory} has no notify targets", "add `notify: [{url_env: …}]` to the inventory")
    notify = Notifier(inventory.notify, inventory.name, lambda: datetime.now(UTC))
    notify(args.event, component=args.component, version=args.release, run=args.run_id, message=args.message)
    notify.close()
    for delivery in notify.deliveries:
        print(f"${delivery.target}: {delivery.status}" + (f" ({delivery.error})" if delivery.error else ""))
    delivered = len(notify.deliveries) == len(inventory.notify) and all(d.ok for d in notify.deliveries)
    return int(ExitCode.OK if delivered else ExitCode.REFUSED)
