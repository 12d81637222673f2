"""A plan: frozen, serialisable, hashed.  What a reviewer approves is what runs.

JSON is written with sorted keys and a content hash over everything else,
so the same inputs give byte-identical files and any edit is detectable.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field, ModelWrapValidatorHandler, model_validator

from upgrader.errors import RefusedError
from upgrader.models.plan_json import file_data, plan_json
from upgrader.models.playbook import Playbook
from upgrader.models.types import Strict

# 2: steps carry their operations (op, undo, verify) instead of prose
# 3: controller_files pins every file the run reads on the controller (testinfra modules) by sha256
# 4: every operation written once, in a table; steps and hosts refer to it by index; hosts with the
#    same steps share one program; each host's undo written once (models/plan_file.py)
SCHEMA_VERSION = 4
# Saved plans of these schemas are still read (diff, report, the playbook of an old run), never applied.
READABLE_SCHEMAS = (2, 3, SCHEMA_VERSION)

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


class HostPlan(Strict):
    """One host's part of a plan.  ``steps`` and ``undo`` are what the engine reads (nothing else
    looks inside the saved file's tables): the steps with their operations, and the operation that
    puts the host back where it began (the undo of each of its live steps, the same object)."""

    host: str
    datacenter: str
    address: str
    from_version: str
    path: list[str]
    phase: int
    canary: bool
    steps: list[Step]
    undo: dict[str, Any] | None = Field(None, description="rolls the host back to from_version: its live steps' undo")


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


class PlanHead(Strict):
    """Everything in a plan but its hosts: the same in memory (Plan) and in the file (plan_file.PlanFile)."""

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
    skipped: list[Skip]
    problems: list[PlanProblem]
    groups: list[GroupLimit] = Field(default_factory=list, description="redundancy groups (absent: none)")
    limit: Limit | None = Field(None, description="the --limit the plan was made with (absent: every host)")
    controller_files: list[ControllerFile] = Field(
        default_factory=list, description="files the run reads on the controller, pinned by sha256"
    )
    content_hash: str = ""


class Plan(PlanHead):
    """A plan in memory: each host with its steps and undo resolved (what planner and engine use)."""

    hosts: list[HostPlan]

    @model_validator(mode="wrap")
    @classmethod
    def _saved(cls, data: Any, handler: ModelWrapValidatorHandler[Plan]) -> Plan:
        """``Plan.model_validate(_json)`` of a saved file's data reads it as ``from_data`` does (tables resolved)."""
        if isinstance(data, dict) and data.get("schema_version") == SCHEMA_VERSION and "operations" in data:
            return plan_file.plan_from_data(data)
        return handler(data)

    @property
    def applicable(self) -> bool:
        return not self.problems

    def host(self, name: str) -> HostPlan:
        return next(h for h in self.hosts if h.host == name)

    def body(self) -> dict[str, Any]:
        """Everything but ``content_hash``, as the saved file's JSON data (tables and all): what the hash covers."""
        return file_data(self)

    def compute_hash(self) -> str:
        """sha256 of ``canonical_json(self.body())``: sorted keys, compact, whatever the file's layout."""
        return "sha256:" + hashlib.sha256(plan_json(self).encode()).hexdigest()

    def sealed(self) -> Plan:
        return self.model_copy(update={"content_hash": self.compute_hash()})

    def to_json(self) -> str:
        """The plan file: ``body()`` and ``content_hash``, indented by 2, the tables before the hosts
        (``plan_json.FILE_ORDER``; keys inside them sorted)."""
        return plan_json(self, indent=2, content_hash=self.content_hash or self.compute_hash()) + "\n"

    @classmethod
    def from_data(cls, data: Any) -> Plan:
        """A saved plan's JSON data (``json.loads`` of its file) as a plan: tables resolved, references
        checked (models/plan_file.py).  Raises PlanFileError or pydantic's ValidationError."""
        return plan_file.plan_from_data(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> Plan:
        return cls.from_data(json.loads(text))


def check_schema(plan: Plan, where: str, hint: str = "") -> None:
    """Refuse to run a saved plan written by another version of upgrader: its fields mean something else here."""
    if plan.schema_version != SCHEMA_VERSION:
        raise RefusedError(
            f"{where} is a schema {plan.schema_version} plan; this upgrader applies schema "
            f"{SCHEMA_VERSION} plans (since 3 a plan pins the files the run reads on the controller; "
            "since 4 it writes each operation once)",
            hint or "re-run `upgrader plan` with this upgrader and have the new plan reviewed",
        )


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(data: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(data).encode()).hexdigest()


# Last, as it imports this module's names: whoever imports Plan can read files with it (the Temporal
# workflow's sandbox passes through only what was imported before it starts).
from upgrader.models import plan_file  # noqa: E402
