"""Loading the files a command names, reporting every problem of every file at once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from upgrader.errors import InputError, Problem
from upgrader.loading import pins
from upgrader.loading.inputs import (
    Loaded,
    cross_problems,
    facts_problems,
    load_facts,
    load_inventory,
    load_playbook,
)
from upgrader.models.facts import Facts
from upgrader.models.inventory import Inventory
from upgrader.models.plan import ControllerFile, SourceRef
from upgrader.models.playbook import Playbook


@dataclass(frozen=True)
class Inputs:
    playbook: Loaded[Playbook]
    inventory: Loaded[Inventory]

    def playbook_ref(self) -> SourceRef:
        return SourceRef(path=display(self.playbook.path), sha256=self.playbook.sha256)

    def controller_files(self) -> list[ControllerFile]:
        """The files the run will read on the controller, pinned by sha256 (loading/pins.py)."""
        return pins.controller_files(self.playbook.model, self.playbook.path.parent)

    def inventory_ref(self) -> SourceRef:
        return SourceRef(
            path=display(self.inventory.path), sha256=self.inventory.sha256, name=self.inventory.model.name
        )


def display(path: Path) -> str:
    """A stable, readable name for a file: relative to the working directory when inside it."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:
        return str(path)


def load_inputs(playbook: Path, inventory: Path) -> Inputs:
    problems: list[Problem] = []
    pb = inv = None
    try:
        pb = load_playbook(playbook)
    except InputError as exc:
        problems += exc.problems
    try:
        inv = load_inventory(inventory)
    except InputError as exc:
        problems += exc.problems
    if pb is not None and inv is not None:
        problems += cross_problems(pb, inv)
    if problems or pb is None or inv is None:
        raise InputError(problems)
    return Inputs(pb, inv)


def load_facts_for(path: Path, inventory: Loaded[Inventory]) -> Facts:
    facts = load_facts(path)
    problems = facts_problems(facts, inventory)
    if problems:
        raise InputError(problems)
    return facts.model
