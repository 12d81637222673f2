"""What every command's --help ends with: an example and the exit codes it can return.

Kept in one table so that the README's exit-code table and each command's help cannot drift apart
(tests/unit/test_help.py holds every command to it).  A command module may set its own EPILOG
instead; options and positionals without help of their own get the shared wording below.
"""

from __future__ import annotations

import argparse
import textwrap

from upgrader.errors import PLAN_EXIT_CODES, RUN_EXIT_CODES

INVENTORY_HELP = "the inventory: datacenters, hosts, roles, SSH access through jump hosts (README: Inventory format)"
POSITIONAL_HELP = {
    "playbook": "a component release's playbook (README: Playbook format)",
    "playbooks": "component release playbooks (README: Playbook format)",
    "component": "the component, as the inventory's roles name it (e.g. ordergw)",
    "run_id": "a run's id, as `upgrader runs` lists it",
    "kind": "which file format",
}

EXAMPLES = {
    "validate": "upgrader validate playbooks/*.yml -i inventories/prod-na.yml",
    "plan": "upgrader plan playbooks/ordergw-5.2.0.yml -i inventories/prod-na.yml --offline --format markdown",
    "facts": "upgrader facts playbooks/ordergw-5.2.0.yml -i inventories/prod-na.yml --out facts.json",
    "apply": "upgrader apply plan.json -i inventories/prod-na.yml --yes --log-format json",
    "resume": "upgrader resume 20261205T070000Z-ordergw-1a2b --yes",
    "rollback": 'upgrader rollback ordergw -i inventories/prod-na.yml --reason "INC-4711 rejects" --yes',
    "status": "upgrader status -i inventories/prod-na.yml ordergw",
    "runs": "upgrader runs --last 5",
    "show": "upgrader show 20261205T070000Z-ordergw-1a2b",
    "report": "upgrader report 20261205T070000Z-ordergw-1a2b --format html --out report.html",
    "windows": "upgrader windows -i inventories/prod-na.yml playbooks/ordergw-5.2.0.yml",
    "schema": "upgrader schema playbook > schemas/playbook.json",
    "completion": "upgrader completion bash > /etc/bash_completion.d/upgrader",
    "worker": "upgrader worker -i inventories/prod-na.yml --datacenter ny5 --temporal-address temporal.desk:7233",
    "watch": "upgrader watch 20261205T070000Z-ordergw-1a2b",
}

EXIT_CODES = {
    "validate": "0 valid; 1 problems (each as file:line:col); 2 usage",
    "plan": PLAN_EXIT_CODES,
    "facts": "0 gathered (unreachable hosts are recorded as such); 1 bad input; 2 usage",
    "apply": RUN_EXIT_CODES,
    "resume": RUN_EXIT_CODES,
    "rollback": "0 every host rolled back and verified, already there, or had nothing to do; 1 refused before "
    "changing anything (bad input, --to not staged, a `requires` conflict); 2 usage; 4 some host did not "
    "end on a verified release, was unreachable, or another rollback held it (each is named)",
    "unlock": "0 every selected host is unlocked (or was not locked); 1 bad input; 2 usage; 4 some host is still "
    "locked or could not be reached (named)",
    "status": "0 nothing needs attention; 1 some host needs attention (named), or bad input; 2 usage",
    "runs": "0 listed (damaged journals are listed as DAMAGED); 2 usage",
    "show": "0 shown; 1 no such run, or its journal is damaged (file:line); 2 usage",
    "report": "0 written; 1 no such run, a damaged journal or an output path that cannot be written; 2 usage",
    "windows": "0 allowed now; 1 blocked now (each blocker named), or bad input; 2 usage",
    "schema": "0 printed; 2 usage",
    "completion": "0 printed; 2 usage",
    "worker": "0 stopped by SIGTERM/SIGINT; 1 bad input or the server cannot be reached; 2 usage",
    "watch": "the run's own exit code once it ends (as `apply`); 1 not a Temporal run, or the server cannot be "
    "reached; 2 usage",
}


def epilog(name: str) -> str | None:
    if name not in EXAMPLES and name not in EXIT_CODES:
        return None
    parts = []
    if name in EXAMPLES:
        parts.append(f"example:\n  {EXAMPLES[name]}")
    if name in EXIT_CODES:
        parts.append(textwrap.fill(f"exit codes: {EXIT_CODES[name]}", width=100, subsequent_indent="  "))
    return "\n\n".join(parts) + "\n"


def document(parser: argparse.ArgumentParser) -> None:
    """Give -i/--inventory and bare positionals their shared help where the command gave none."""
    for action in parser._actions:  # argparse has no public accessor for a parser's actions
        if action.help is not None:
            continue
        if "--inventory" in action.option_strings:
            action.help = INVENTORY_HELP
        elif not action.option_strings and action.dest in POSITIONAL_HELP:
            action.help = POSITIONAL_HELP[action.dest]
