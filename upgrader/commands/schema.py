"""`upgrader schema playbook|inventory`: JSON Schema for editors (yaml-language-server)."""

from __future__ import annotations

import argparse
import json

from pydantic import BaseModel

from upgrader.models.facts import Facts
from upgrader.models.inventory import Inventory
from upgrader.models.playbook import Playbook

HELP = "print the JSON Schema of a file format"
_MODELS: dict[str, type[BaseModel]] = {"playbook": Playbook, "inventory": Inventory, "facts": Facts}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=sorted(_MODELS))


def run(args: argparse.Namespace) -> int:
    schema = _MODELS[args.kind].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://upgrader.invalid/schema/{args.kind}.json"
    print(json.dumps(schema, indent=2, sort_keys=True))
    return 0
