"""A plan: frozen, serialisable, hashed.  What a reviewer approves is what runs.

JSON is written with sorted keys and a content hash over everything else,
so the same inputs give byte-identical files and any edit is detectable.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field

from upgrader.errors import RefusedError
from upgrader.models.plan_json import plan_json
from upgrader.models.playbook import Playbook
from upgrader.models.types import Strict

# 2: steps carry their operations (op, undo, verify) instead of prose
# 3: controller_files pins every file the run reads on the controller (testinfra modules) by sha256
SCHEMA_VERSION = 3

Action = Literal["stage", "precheck", "stop", "switch", "carry_over", "migrate", "start", "verify", "testinfra", "bake"]


class Step(Strict):
    """One step of a host: the agent operation it runs, the one that undoes it and the one that confirms it.

    Operations are data (``op``: the agent's operation name, then its arguments, placeholders
    already substituted); the engine sends ``op`` as it is, adding only the step's id (and, when
    staging, where it uploaded the artifact).  The text a reviewer reads is rendered from them
    (planning/describe.py).
    """

    id: str
    action: Action
    version: str | None = None
    op: dict[str, Any] = Field(description="the agent operation this step runs")
    undo: dict[str, Any] | None = Field(None, description="the agent operation that reverses this step")
    verify: dict[str, Any] | None = Field(None, description="the agent operation that confirms this step's effect")

    def to_dict(self) -> dict[str, Any]:
        """``model_dump(mode="json")`` written out: a large plan has tens of thousands of steps."""
        return {
            "id": self.id,
            "action": self.action,
            "version": self.version,
            "op": self.op,
            "undo": self.undo,
            "verify": self.verify,
        }


class HostPlan(Strict):
    host: str
    datacenter: str
    address: str
    from_version: str
    path: list[str]
    phase: int
    canary: bool
    steps: list[Step]

    def to_dict(self, *, steps: bool = True) -> dict[str, Any]:
        """``model_dump(mode="json")`` written out (one per host of a plan); without the steps if asked."""
        data = {
            "host": self.host,
            "datacenter": self.datacenter,
            "address": self.address,
            "from_version": self.from_version,
            "path": list(self.path),
            "phase": self.phase,
            "canary": self.canary,
        }
        if steps:
            data["steps"] = [s.to_dict() for s in self.steps]
        return data


class Gate(Strict):
    """A manual gate before a phase: the run waits for `upgrader promote RUN` (or an abort, or the timeout)."""

    id: str  # what `promote --gate` names: promote-<dc>|promote-global (after a canary), enter-<dc>
    kind: Literal["promote", "datacenter"]
    timeout: float
    on_timeout: Literal["rollback", "hold"]
    watch: list[str] = Field(default_factory=list, description="canaries whose checks keep running while it waits")


class GroupLimit(Strict):
    """A redundancy group of the inventory, by the plan's hosts: never more than ``max_unavailable`` down at once."""

    name: str
    hosts: list[str] = Field(description="its members that this plan upgrades")
    max_unavailable: int


class Phase(Strict):
    index: int
    kind: Literal["canary", "wave"]
    datacenter: str | None
    hosts: list[str]
    bake: float = 0.0
    pause_before: float = 0.0
    gate: Gate | None = None


class Skip(Strict):
    host: str
    datacenter: str
    reason: str


class PlanProblem(Strict):
    host: str | None
    message: str
    hint: str = ""


class SourceRef(Strict):
    path: str
    sha256: str
    name: str | None = None


class ControllerFile(Strict):
    """A file the run reads on the controller (a testinfra module, or a file of the package it imports).

    ``path`` is relative to the playbook's directory, as the playbook names it; ``sha256`` is of its
    bytes when the plan was made.  `apply plan.json` refuses the plan, before connecting, if any
    differs, or if the set of files differs (planning/pins.py).
    """

    path: str
    sha256: str
    used_by: str = Field(description="the check that reads it, e.g. 'check ordergw-testinfra'")


class ArtifactRef(Strict):
    version: str
    file: str | None = None
    url: str | None = None
    sha256: str
    size: int | None = None
    strip_components: int = 0


class Limit(Strict):
    """``--limit``: the patterns a plan was made with and the inventory hosts they selected (planning/limit.py).

    The planner looks at these hosts only; `apply plan.json` resolves the patterns again and refuses
    the plan unless they still select exactly these hosts.
    """

    patterns: list[str] = Field(min_length=1)
    hosts: list[str]


class AssumedFacts(Strict):
    """Everything the planner read from a host's facts: with the inputs, enough to plan again."""

    installed: str | None
    staged: list[str]
    requires: dict[str, str | None] = Field(
        default_factory=dict, description="installed version of each component the playbook requires"
    )
    unreachable: str | None = Field(None, description="why the host could not be reached, if it was not")

    def to_dict(self) -> dict[str, Any]:
        """``model_dump(mode="json")`` written out (one per host of a plan)."""
        return {
            "installed": self.installed,
            "staged": list(self.staged),
            "requires": dict(self.requires),
            "unreachable": self.unreachable,
        }


class Plan(Strict):
    schema_version: int = SCHEMA_VERSION
    component: str
    vendor: str
    target_version: str
    playbook: SourceRef
    inventory: SourceRef
    spec: Playbook
    artifacts: list[ArtifactRef]
    facts_fingerprint: str
    facts_assumed: dict[str, AssumedFacts]
    phases: list[Phase]
    hosts: list[HostPlan]
    skipped: list[Skip]
    problems: list[PlanProblem]
    groups: list[GroupLimit] = Field(default_factory=list, description="redundancy groups (absent: none)")
    limit: Limit | None = Field(None, description="the --limit the plan was made with (absent: every host)")
    controller_files: list[ControllerFile] = Field(
        default_factory=list, description="files the run reads on the controller, pinned by sha256"
    )
    content_hash: str = ""

    @property
    def applicable(self) -> bool:
        return not self.problems

    def host(self, name: str) -> HostPlan:
        return next(h for h in self.hosts if h.host == name)

    def body(self) -> dict[str, Any]:
        """Everything but ``content_hash``, as JSON data: what the hash covers."""
        data = self.model_dump(mode="json", exclude=_unset_limit(self) | _no_groups(self))
        data.pop("content_hash", None)
        return data

    def compute_hash(self) -> str:
        """sha256 of ``canonical_json(self.body())``, built without the intermediate data (plan_json)."""
        return "sha256:" + hashlib.sha256(plan_json(self).encode()).hexdigest()

    def sealed(self) -> Plan:
        return self.model_copy(update={"content_hash": self.compute_hash()})

    def to_json(self) -> str:
        """The plan file: ``body()`` and ``content_hash``, sorted keys, indented by 2."""
        return plan_json(self, indent=2, content_hash=self.content_hash or self.compute_hash()) + "\n"


def check_schema(plan: Plan, where: str) -> None:
    """Refuse a saved plan written by another version of upgrader: its fields mean something else here."""
    if plan.schema_version != SCHEMA_VERSION:
        raise RefusedError(
            f"{where} is a schema {plan.schema_version} plan; this upgrader applies schema "
            f"{SCHEMA_VERSION} plans (since 3 a plan pins the files the run reads on the controller)",
            "plan again with this upgrader and have the new plan reviewed",
        )


def _unset_limit(plan: Plan) -> set[str]:
    """An unlimited plan has no ``limit`` key at all: its JSON (and hash) is what it was before limits existed."""
    return {"limit"} if plan.limit is None else set()


def _no_groups(plan: Plan) -> set[str]:
    """A plan without redundancy groups has no ``groups`` key: its JSON (and hash) is what it was before them."""
    return set() if plan.groups else {"groups"}


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(data: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(data).encode()).hexdigest()
