"""Connect to a run's hosts, and start their agents, before the rest of upgrader has even loaded.

Importing the command, pydantic and the models and validating the inputs takes ~0.5 s; the SSH
handshakes and agent starts on 16 hosts (sshd, PAM, sudo, python on the hosts) take about as long
again, mostly waiting on the hosts.  So `rollback` and `apply` start them first, but only towards
endpoints that an earlier live command derived from this very inventory file (same bytes, same
upgrader) and recorded with ``remember``; `apply` picks the hosts that run its playbook's component.
A saved plan starts nothing early: it must first be planned again from its inputs, and refused if it
differs, before any host is contacted.  The command then loads and validates everything as usual, and ``adopt`` hands
over a connection only if its endpoint and timeouts are exactly what the validated inventory and
options give; anything else is closed unused (its agent, which ran nothing, exits with it).  Without
a record (a new inventory), it connects at the usual time.  Nothing here may fail the command: on
any surprise it quietly does nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from upgrader import __version__
from upgrader.transport.base import Endpoint, Timeouts

if TYPE_CHECKING:
    from upgrader.engine.endpoints import Pool
    from upgrader.models.inventory import Inventory
    from upgrader.transport.base import Transport

log = logging.getLogger(__name__)
COMMANDS = ("rollback", "apply")
_started: dict[str, Any] = {}  # inventory sha256, timeouts and {host: (endpoint, transport)}


def record_path(state: Path, inventory_sha256: str) -> Path:
    return state / "connections" / f"{inventory_sha256}.json"


def remember(state: Path, inventory_sha256: str, inventory: Inventory, endpoints: dict[str, Endpoint]) -> None:
    """Record the validated endpoints of an inventory, with each host's datacenter and components."""
    path = record_path(state, inventory_sha256)
    if path.exists():
        return
    hosts = {}
    for dc_name, dc in inventory.datacenters.items():
        for name, host in dc.hosts.items():
            components = sorted({c for role in host.roles for c in inventory.roles.get(role, ())})
            hosts[name] = {"dc": dc_name, "components": components, "endpoint": dataclasses.asdict(endpoints[name])}
    try:
        from upgrader.files import write_atomic

        for private in (state, path.parent):  # key paths and addresses: not for other local users
            private.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(private, 0o700)
        write_atomic(path, json.dumps({"upgrader": __version__, "hosts": hosts}, sort_keys=True),
                     tmp=path.with_name(f".{path.name}.{os.getpid()}"))
    except OSError:
        log.debug("cannot record connection details in %s", path, exc_info=True)


def start(argv: list[str], state: Path) -> None:
    """For COMMANDS: start connecting to the selected hosts in the background, if a record allows."""
    try:
        args = _parser().parse_known_args(argv)[0]
        if args.command not in COMMANDS or not args.inventory or not args.target:
            return
        if args.command == "apply" and args.target.endswith(".json"):
            return  # a saved plan is checked against its inputs before anything connects (commands/apply.py)
        component = args.target if args.command == "rollback" else _component_of(Path(args.target))
        digest = hashlib.sha256(Path(args.inventory).read_text(encoding="utf-8").encode()).hexdigest()
        record = json.loads(record_path(args.state_dir or state, digest).read_text(encoding="utf-8"))
        if record.get("upgrader") != __version__:
            return
        wanted = {h.strip() for h in (args.hosts or "").split(",") if h.strip()}
        chosen = {name: _endpoint(h["endpoint"]) for name, h in record["hosts"].items()
                  if component in h["components"] and (not args.dc or h["dc"] in args.dc)
                  and (not wanted or name in wanted)}
        if not chosen:
            return
        from upgrader.engine import remote
        from upgrader.transport.fabric_adapter import FabricTransport

        timeouts = Timeouts.for_options(args.connect_timeout, args.command_timeout)
        started = {name: (ep, FabricTransport(ep, timeouts)) for name, ep in chosen.items()}
        for name, (_, transport) in started.items():
            threading.Thread(target=remote.start, args=(transport, args.python), name=f"early-{name}",
                             daemon=True).start()
        _started.update(sha256=digest, timeouts=timeouts, hosts=started)
    except Exception:  # an optimisation only: the command connects as usual
        log.debug("no early connections", exc_info=True)


def adopt(pool: Pool, inventory_sha256: str, endpoints: dict[str, Endpoint], timeouts: Timeouts) -> None:
    """Give ``pool`` the early connections that match the validated inventory exactly; close the rest."""
    started: dict[str, tuple[Endpoint, Transport]] = _started.pop("hosts", {})
    same_run = _started.pop("sha256", None) == inventory_sha256 and _started.pop("timeouts", None) == timeouts
    for name, (endpoint, transport) in started.items():
        if same_run and endpoints.get(name) == endpoint:
            pool.adopt(name, transport)
        else:
            transport.close()


def _component_of(path: Path) -> str | None:
    """The component a playbook or saved plan is for, read without the models (they load later)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    component = data.get("component") if isinstance(data, dict) else None
    return component if isinstance(component, str) else None


def _endpoint(fields: dict[str, Any]) -> Endpoint:
    jump = fields.get("jump")
    return Endpoint(**{**fields, "jump": _endpoint(jump) if jump else None})


class _Quiet(argparse.ArgumentParser):
    """Bad options are the real parser's to report: this one neither prints nor exits."""

    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def _parser() -> argparse.ArgumentParser:
    """The options that decide which hosts to reach and how (the command's own parser says the rest)."""
    p = _Quiet(add_help=False)
    p.add_argument("--state-dir", type=Path)
    p.add_argument("command")
    p.add_argument("target", nargs="?")  # rollback's COMPONENT, apply's PLAYBOOK or PLAN.json
    p.add_argument("-i", "--inventory")
    p.add_argument("--dc", action="append", default=[])
    p.add_argument("--hosts")
    p.add_argument("--connect-timeout", type=float, default=5.0)
    p.add_argument("--command-timeout", type=float, default=None)
    p.add_argument("--python", default="python3")
    return p
