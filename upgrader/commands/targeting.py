"""`--limit PATTERN` on every command that works on hosts: the option, and resolving it (planning/limit.py).

Old spellings (rollback's ``--dc``/``--hosts``, windows' ``--datacenter``) stay as hidden aliases
that warn: rollback is break-glass, and a runbook written last year must not meet a usage error in
an incident.  They only add ``--limit`` patterns, so there is one meaning behind every spelling.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from upgrader.planning import limit
from upgrader.vocabulary import Event, HostState

if TYPE_CHECKING:
    from upgrader.loading.inputs import Loaded
    from upgrader.models.inventory import Inventory
    from upgrader.models.plan import Limit

HELP = (
    "only these hosts: a name, a glob ('ny5-oe*'), dc:NAME, role:NAME or failed:RUN (the hosts that "
    "failed in run RUN); comma-separated or repeated, the union is used; a pattern matching no host "
    "is an error"
)


def add_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--limit", action="extend", type=patterns, default=[], metavar="PATTERN", help=HELP)


def patterns(text: str) -> list[str]:
    """argparse type: one --limit value → its patterns, each checked (a bad one is a usage error, exit 2)."""
    try:
        found = limit.split([text])
        for pattern in found:
            limit.parse(pattern)
    except limit.LimitSyntaxError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not found:
        raise argparse.ArgumentTypeError("--limit needs a pattern, e.g. --limit dc:ny5")
    return found


class DeprecatedAlias(argparse.Action):
    """A hidden old spelling: warns, and adds the --limit patterns it means (``prefix`` + each value)."""

    def __init__(self, option_strings: Sequence[str], dest: str, prefix: str = "", **kwargs: Any) -> None:
        self.prefix = prefix
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        text = str(values)
        meant = ",".join(f"{self.prefix}{v}" for v in limit.split([text]))
        print(f"warning: {option_string} is deprecated and will be removed; use --limit {meant}", file=sys.stderr)
        namespace.limit = [*(namespace.limit or []), *(patterns(meant) if meant else [])]  # never the shared default


def add_deprecated(parser: argparse.ArgumentParser, option: str, prefix: str) -> None:
    parser.add_argument(option, action=DeprecatedAlias, prefix=prefix, dest="limit_alias", default=None)


def failed_reader(state: Path) -> Callable[[str], set[str]]:
    """``failed(run)``: the hosts that failed in run ``run``, read with the journal's own reader."""

    def failed(run: str) -> set[str]:
        from upgrader.journal import JOURNAL, read, run_directory

        return failed_hosts(read(run_directory(state, run) / JOURNAL))

    return failed


# A host's last state in run-end that means it did not end where the run meant it to.
_BAD_STATES = frozenset({HostState.FAILED, HostState.ROLLBACK_FAILED, HostState.HELD, HostState.UNREACHABLE})


def failed_hosts(entries: Any) -> set[str]:
    """Hosts with a failed record in a journal (host-end, bake-end, testinfra, rollback-end: ok false)
    or a failed final state in its run-end, whether or not they were rolled back since."""
    out: set[str] = set()
    for entry in entries:
        host = entry.get("host")
        if isinstance(host, str) and entry.get("ok") is False:
            out.add(host)
        if entry.get("event") == Event.RUN_END and isinstance(entry.get("hosts"), dict):
            out |= {
                h for h, info in entry["hosts"].items() if isinstance(info, dict) and info.get("state") in _BAD_STATES
            }
    return out


def select(args: argparse.Namespace, inventory: Loaded[Inventory]) -> limit.Selection | None:
    """The selection --limit makes in a loaded inventory; None without --limit."""
    given = getattr(args, "limit", None)
    if not given:
        return None
    return limit.resolve(
        given, limit.members(inventory.model), failed_reader(args.state_dir), where=str(inventory.path)
    )


def plan_limit(selection: limit.Selection | None) -> Limit | None:
    """The plan's record of a selection, or None."""
    if selection is None:
        return None
    from upgrader.models.plan import Limit

    return Limit(patterns=list(selection.patterns), hosts=list(selection.hosts))
