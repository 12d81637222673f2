"""`upgrader worker -i INVENTORY --datacenter ny5`: a datacenter's share of Temporal runs (`--engine temporal`)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from upgrader.cli.logs import say
from upgrader.commands import live
from upgrader.errors import RefusedError
from upgrader.loading.inputs import load_inventory
from upgrader.planning import signing
from upgrader.temporal import limits, settings
from upgrader.transport.base import Timeouts

HELP = "serve Temporal runs: a datacenter's host activities (--datacenter) and/or workflows and journals (--control)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--inventory", type=Path, required=True)
    parser.add_argument(
        "--datacenter",
        action="append",
        default=[],
        metavar="DC",
        help="poll this datacenter's task queue and run its hosts' activities over SSH (repeatable)",
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="also run the workflows and write their journals into --state-dir (the desk's worker)",
    )
    parser.add_argument(
        "--artifacts",
        type=Path,
        help="the artifact store (release tarballs, and the runs' stored plans in plans/) is here "
        "(default: the path the controller gave the run)",
    )
    parser.add_argument(
        "--plan-key",
        type=Path,
        metavar="FILE",
        help="the controllers' plan key (default: $UPGRADER_PLAN_KEY): a datacenter worker runs only "
        "plans signed with it, and refuses to start without one",
    )
    parser.add_argument(
        "--activities-per-second",
        type=_rate,
        default=limits.QUEUE_ACTIVITIES_PER_SECOND,
        metavar="N",
        help="host programs started per second on each datacenter queue, by all its workers together "
        f"(default {limits.QUEUE_ACTIVITIES_PER_SECOND:g}; 0: no limit)",
    )
    parser.add_argument(
        "--worker-activities-per-second",
        type=_rate,
        default=None,
        metavar="N",
        help="also at most N per second from this worker (default: no limit of its own)",
    )
    settings.add_arguments(parser)
    live.add_connection_arguments(parser)


def _rate(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate: a number of activities per second, 0 for none")
    return value or None


def run(args: argparse.Namespace) -> int:
    inventory = load_inventory(args.inventory)
    unknown = [dc for dc in args.datacenter if dc not in inventory.model.datacenters]
    if unknown:
        raise RefusedError(
            f"no datacenter {', '.join(unknown)} in {args.inventory}",
            f"choose from {', '.join(inventory.model.datacenters)}",
        )
    if not args.datacenter and not args.control:
        raise RefusedError("a worker needs something to serve", "give --datacenter DC (repeatable) and/or --control")
    found = settings.resolve(args, inventory.model, args.inventory)
    key = signing.key(args.plan_key)
    if args.datacenter and key is None:
        raise RefusedError(
            "a datacenter worker runs only plans signed with the plan key, and none is configured",
            f"give --plan-key FILE or set ${signing.ENV} (the key `apply --engine temporal` signs with)",
        )
    return asyncio.run(_serve(args, inventory, found, key))


async def _serve(  # type: ignore[no-untyped-def]
    args: argparse.Namespace,
    inventory,
    found: settings.Settings,
    key: bytes | None,
) -> int:
    from upgrader.temporal.client import connect
    from upgrader.temporal.worker import Rate, serve, size_executor, workers

    size_executor(args.parallel, len(args.datacenter or []))  # one thread per host program in flight
    client = await connect(found)
    running = workers(
        client,
        inventory,
        datacenters=args.datacenter,
        control=args.control,
        state_dir=args.state_dir,
        artifacts=args.artifacts,
        parallel=args.parallel,
        timeouts=Timeouts.for_options(args.connect_timeout, args.command_timeout),
        plan_key=key,
        rate=Rate(args.activities_per_second, args.worker_activities_per_second),
    )
    queues = [settings.queue(dc) for dc in args.datacenter] + ([settings.CONTROL_QUEUE] if args.control else [])
    rate = f"{args.activities_per_second:g}/s per queue" if args.activities_per_second else "no rate limit"
    say(
        args,
        f"worker on {found.address} ({found.namespace}): polling {', '.join(queues)}"
        + (f"; host programs started at most {rate}" if args.datacenter else ""),
    )
    await serve(running)
    return 0
