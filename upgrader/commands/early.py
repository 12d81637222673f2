"""Connect to a run's hosts, and start their agents, before the rest of upgrader has even loaded.

Importing the command, pydantic and the models and validating the inputs takes ~0.5 s; the SSH
handshakes and agent starts on 16 hosts (sshd, PAM, sudo, python on the hosts) take about as long
again, mostly waiting on the hosts.  So `rollback` and `apply` start them first, but only towards
hosts of an inventory file that an earlier live command validated (same bytes, same upgrader) and
recorded with ``remember``; `apply` picks the hosts that run its playbook's component.  ``start`` returns
what it began (``Started``: a ``Pool`` of those hosts, warming); the CLI hands it to the command on its
arguments (``args.early``), and nothing is kept in this module.
A saved plan starts nothing early: it must first be planned again from its inputs, and refused if it
differs, before any host is contacted.  The command then loads and validates everything as usual, and
``adopt`` hands over a connection only if its endpoint and timeouts are exactly what the validated
inventory and options give (``Pool.hand_over``); anything else is closed unused (its agent, which ran
nothing, exits with it).  Without a record (a new inventory), it connects at the usual time.  Nothing
here may fail the command: on any surprise it quietly does nothing.

The record is trusted only as far as it is protected (issue 25 §5).  It is read only if it is the
operator's own file, mode 0600, in directories only the operator can write (``loading.private``).
Even then it only says "these bytes were validated before": the endpoints, the hosts' datacenters,
roles and components are derived from the inventory file itself (``inventory_hosts``, the rules of
``engine.endpoints`` without the models), and a record that says anything else is ignored with a
warning.  Host keys are always checked, against the known_hosts file the inventory names (or
~/.ssh/known_hosts): never a setting read from a record.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from upgrader import __version__
from upgrader.loading import bounded_read, private, yamlfile
from upgrader.transport.base import DEFAULTS, PYTHON, Endpoint, Timeouts

if TYPE_CHECKING:
    from upgrader.engine.pool import Pool
    from upgrader.models.inventory import Inventory

log = logging.getLogger(__name__)
COMMANDS = ("rollback", "apply")


@dataclass(frozen=True)
class Started:
    """What ``start`` began: ``pool``, connecting to the recorded hosts of the inventory whose bytes hash to
    ``sha256``, for the command to adopt (``adopt``) once it has validated that inventory itself."""

    sha256: str
    pool: Pool


def record_path(state: Path, inventory_sha256: str) -> Path:
    return state / "connections" / f"{inventory_sha256}.json"


RECORD_LIMIT = 64 << 20  # bytes: a 10,000-host record is ~4 MB


def remember(state: Path, inventory_sha256: str, inventory: Inventory, endpoints: dict[str, Endpoint]) -> None:
    """Record that this inventory validated, with its endpoints and each host's datacenter and components.

    A record already there is kept only if it is one ``start`` would use and says the same; anything
    else (a planted file, a loosened mode) is replaced.
    """
    path = record_path(state, inventory_sha256)
    hosts = {}
    for dc_name, dc in inventory.datacenters.items():
        for name, host in dc.hosts.items():
            components = sorted({c for role in host.roles for c in inventory.roles.get(role, ())})
            hosts[name] = {
                "dc": dc_name,
                "components": components,
                "roles": sorted(host.roles),
                "endpoint": dataclasses.asdict(endpoints[name]),
            }
    record = {"upgrader": __version__, "hosts": hosts}
    try:
        if path.exists() and _loads(private.read_private(path, state, RECORD_LIMIT)) == record:
            return
        from upgrader.files import write_atomic

        for directory in (state, path.parent):  # key paths and addresses: not for other local users
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(directory, 0o700)
        write_atomic(path, json.dumps(record, sort_keys=True), tmp=path.with_name(f".{path.name}.{os.getpid()}"))
    except OSError:
        log.debug("cannot record connection details in %s", path, exc_info=True)


def start(argv: list[str], state: Path) -> Started | None:
    """For COMMANDS: start connecting to the selected hosts in the background, if a record allows; what was
    started (None: nothing), for the command to ``adopt``."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        log.debug("no early connections: only %s connect before loading", " and ".join(sorted(COMMANDS)))
        return None
    try:
        args = _parser().parse_args(argv)  # anything it does not fully accept (--help, a usage error): no start
        if args.command not in COMMANDS or not args.inventory or not args.target:
            return None
        if args.command == "apply" and args.target.endswith(".json"):
            return None  # a saved plan is checked against its inputs before anything connects (commands/apply.py)
        if args.command == "apply" and (args.now is None) != (not " ".join((args.reason or "").split())):
            return None  # --now without its reason (or a reason for nothing) is refused before anything connects
        component = args.target if args.command == "rollback" else _component_of(Path(args.target))
        raw = bounded_read.read_bytes(Path(args.inventory), "inventory")
        digest = hashlib.sha256(raw).hexdigest()
        state = args.state_dir or state
        record = _loads(private.read_private(record_path(state, digest), state, RECORD_LIMIT))
        if not isinstance(record, dict) or record.get("upgrader") != __version__:
            return None
        hosts = inventory_hosts(raw, Path(args.inventory))
        if record.get("hosts") != hosts:
            log.warning(
                "ignoring %s: it does not describe the inventory %s (endpoints are taken from the "
                "inventory, never from a record)",
                record_path(state, digest),
                args.inventory,
            )
            return None
        wanted = _limited(args.limit, hosts)
        chosen = {
            name: _endpoint(h["endpoint"])
            for name, h in hosts.items()
            if component in h["components"] and (wanted is None or name in wanted)
        }
        if not chosen:
            return None
        from upgrader.engine.pool import PARALLEL, Pool

        timeouts = Timeouts.for_options(args.connect_timeout, args.command_timeout)
        pool = Pool(chosen, timeouts=timeouts, parallel=args.parallel or PARALLEL)
        # --parallel daemon threads pulling from one queue: 10,000 hosts must not start 10,000 threads.
        # The pool's jump connections (one per jump host) go to the command's pool with the sessions.
        pool.warm(chosen, args.python)
        return Started(digest, pool)
    except Exception as exc:  # an optimisation only: the command connects as usual
        # One line, no traceback: "not a command that connects early" and "no record yet" are the usual
        # answers, and -vv is read by people (a usage error is the real parser's to report).
        log.debug("no early connections: %s", f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        return None


def adopt(pool: Pool, started: Started | None, inventory_sha256: str) -> None:
    """Give ``pool`` the early connections that match the validated inventory exactly; close the rest."""
    if started is None:
        return
    if started.sha256 == inventory_sha256:
        started.pool.hand_over(pool)  # same endpoints and timeouts only; the early pool is empty afterwards
    else:
        started.pool.close()


# A top-level `component: NAME` line; anything fancier (flow style, anchors) just means no early start.
_COMPONENT_RE = re.compile(rb"^component:[ \t]*([\"']?)([a-z0-9][a-z0-9_.-]{0,62})\1[ \t]*(?:#.*)?$", re.MULTILINE)


def _component_of(path: Path) -> str | None:
    """The component a playbook is for, read without YAML or the models (the command parses it safely later).

    Only a line is matched: this runs before the playbook is validated, so nothing in it (an alias
    bomb, a huge file: the read is capped) may cost more than a scan.
    """
    found = _COMPONENT_RE.findall(bounded_read.read_bytes(path, "playbook"))
    return found[0][1].decode() if len(found) == 1 else None


def _limited(patterns: list[str], hosts: dict[str, Any]) -> set[str] | None:
    """The recorded hosts --limit selects (the command's own resolver); None without a limit.

    ``failed:RUN`` needs the journal, and a record without roles cannot answer ``role:``: those raise,
    so nothing starts early and the command resolves the limit itself.
    """
    if not patterns:
        return None
    from upgrader.planning import limit

    members = [limit.Member(name, h["dc"], tuple(h["roles"])) for name, h in hosts.items()]
    return set(limit.resolve(patterns, members, failed=None).hosts)


def _endpoint(fields: dict[str, Any]) -> Endpoint:
    jump = fields.get("jump")
    return Endpoint(**{**fields, "jump": _endpoint(jump) if jump else None})


def _loads(data: bytes | None) -> Any:
    return None if data is None else json.loads(data)


def inventory_hosts(raw: bytes, path: Path) -> dict[str, Any]:
    """Each host of the inventory ``raw`` (read from ``path``) as ``remember`` records it, derived from the
    file itself without the models: the rules of engine.endpoints.endpoints (tests/unit/test_state_trust.py
    holds the two equal).  Anything unexpected raises: then nothing starts early."""
    doc = yamlfile.parse(raw.decode("utf-8"), path)
    if doc.invisible:
        raise ValueError("invisible characters")
    data = _mapping(doc.data)
    base = path.resolve().parent
    defaults = _mapping(data.get("defaults") or {})
    user, key = _text(defaults.get("user")), _path(base, _text(defaults.get("ssh_key")))
    port = _port(defaults.get("port")) or 22
    known = _path(base, _text(data.get("known_hosts"))) or str(Path("~/.ssh/known_hosts").expanduser())
    roles = {str(r): [str(c) for c in cs] for r, cs in _mapping(data.get("roles") or {}).items()}
    hosts: dict[str, Any] = {}
    for dc_name, dc in _mapping(data["datacenters"]).items():
        dc = _mapping(dc)
        j = dc.get("jump")
        jump = None if j is None else _reach(f"{dc_name}-jump", _mapping(j), base, user, port, key, known, None)
        for name, host in _mapping(dc["hosts"]).items():
            host = _mapping(host)
            host_roles = [str(r) for r in host.get("roles") or []]
            hosts[name] = {
                "dc": dc_name,
                "components": sorted({c for r in host_roles for c in roles.get(r, ())}),
                "roles": sorted(host_roles),
                "endpoint": dataclasses.asdict(_reach(name, host, base, user, port, key, known, jump)),
            }
    return hosts


def _reach(
    name: str,
    host: dict[str, Any],
    base: Path,
    user: str | None,
    port: int,
    key: str | None,
    known: str,
    jump: Endpoint | None,
) -> Endpoint:
    """An endpoint as engine.endpoints makes it: host keys always checked, against the inventory's known_hosts."""
    address = _text(host.get("address"))
    if not address:
        raise ValueError(f"{name}: no address")
    return Endpoint(
        name=name,
        address=address,
        port=_port(host.get("port")) or port,
        user=_text(host.get("user")) or user or "root",
        ssh_key=_path(base, _text(host.get("ssh_key"))) or key,
        known_hosts=known,
        jump=jump,
    )


def _mapping(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("not a mapping")
    return value


def _text(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _port(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError("not a port")
    return value


def _path(base: Path, value: str | None) -> str | None:  # as engine.endpoints._path
    if value is None:
        return None
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p))


class _Quiet(argparse.ArgumentParser):
    """Bad options are the real parser's to report: this one neither prints nor exits."""

    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def _parser() -> argparse.ArgumentParser:
    """A strict copy of the command lines of COMMANDS that the real parser accepts, without importing them.

    Importing the command (pydantic, the models, fabric) is the time the handshakes overlap, so the
    real parser cannot be asked first.  This one refuses everything it does not fully check: --help,
    an unknown or abbreviated option, a missing required one, a bad value.  Then nothing starts and
    the real parser reports.  It may know fewer options than the commands (then early start just
    does not happen for a line that uses them), never accept more: tests/unit/test_early_connect.py
    holds each option here to the real one, and every required option of the real parser to this.
    """
    p = _Quiet(add_help=False, allow_abbrev=False)
    p.add_argument("--state-dir", type=Path)
    p.add_argument("--debug", action="store_true")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Quiet)
    rollback = sub.add_parser("rollback", add_help=False, allow_abbrev=False)
    rollback.add_argument("target", metavar="component")
    rollback.add_argument("--reason", required=True)
    rollback.add_argument("--to")
    rollback.add_argument("--playbook", type=Path)
    rollback.add_argument("--playbooks", type=Path)
    apply = sub.add_parser("apply", add_help=False, allow_abbrev=False)
    apply.add_argument("target", metavar="playbook")
    apply.add_argument("--artifacts", type=Path)
    apply.add_argument("--break-lock")
    apply.add_argument("--overrides", type=Path)
    apply.add_argument("--now", type=_aware)
    apply.add_argument("--reason")  # with --now only (commands/guardbypass.py): checked in start()
    apply.add_argument("--engine", choices=("local", "temporal"))
    for name in ("address", "namespace", "tls-ca", "tls-cert", "tls-key", "tls-server-name", "api-key-file"):
        apply.add_argument(f"--temporal-{name}")
    for cmd in (rollback, apply):
        cmd.add_argument("-i", "--inventory", required=True)
        cmd.add_argument("--yes", action="store_true")
        cmd.add_argument("--connect-timeout", type=float, default=DEFAULTS.connect)  # as live's, which a test holds
        cmd.add_argument("--command-timeout", type=float, default=None)
        cmd.add_argument("--parallel", type=_parallel)
        cmd.add_argument("--python", default=PYTHON)
        cmd.add_argument("--log-format", choices=["auto", "plain", "json", "rich"])
        cmd.add_argument("--metrics-dir", type=Path)
        cmd.add_argument("-v", "--verbose", action="count", default=0)  # upgrader.cli.logs: every command's
        cmd.add_argument("-q", "--quiet", action="count", default=0)
        cmd.add_argument("--log-file", type=Path)
        cmd.add_argument("--limit", action="extend", type=_patterns, default=[])  # rollback's --dc/--hosts: none
    return p


def _patterns(text: str) -> list[str]:  # as targeting.patterns
    from upgrader.planning import limit

    found = limit.split([text])
    for pattern in found:
        limit.parse(pattern)  # LimitSyntaxError is a ValueError: no start
    if not found:
        raise ValueError(text)
    return found


def _aware(text: str) -> datetime:  # as live.aware
    value = datetime.fromisoformat(text)
    if value.tzinfo is None or not bounded_read.reasonable_year(value.year):
        raise ValueError(text)
    return value


def _parallel(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value
