"""A plan: frozen, serialisable, hashed.  What a reviewer approves is what runs.

JSON is written with sorted keys and a content hash over everything else,
so the same inputs give byte-identical files and any edit is detectable.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field

from upgrader.models.playbook import Playbook
from upgrader.models.types import Strict

SCHEMA_VERSION = 1

Action = Literal["stage", "precheck", "stop", "switch", "migrate", "start", "verify", "bake"]


class Step(Strict):
    id: str
    action: Action
    version: str | None = None
    detail: str
    undo: str | None = Field(None, description="how this step is reversed")
    verify: str | None = Field(None, description="how the step's effect is confirmed")


class HostPlan(Strict):
    host: str
    datacenter: str
    address: str
    from_version: str
    path: list[str]
    phase: int
    canary: bool
    steps: list[Step]


class Phase(Strict):
    index: int
    kind: Literal["canary", "wave"]
    datacenter: str | None
    hosts: list[str]
    bake: float = 0.0
    pause_before: float = 0.0


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


class ArtifactRef(Strict):
    version: str
    file: str | None = None
    url: str | None = None
    sha256: str
    size: int | None = None
    strip_components: int = 0


class AssumedFacts(Strict):
    installed: str | None
    staged: list[str]


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
    content_hash: str = ""

    @property
    def applicable(self) -> bool:
        return not self.problems

    def host(self, name: str) -> HostPlan:
        return next(h for h in self.hosts if h.host == name)

    def body(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data.pop("content_hash", None)
        return data

    def compute_hash(self) -> str:
        return "sha256:" + hashlib.sha256(canonical_json(self.body()).encode()).hexdigest()

    def sealed(self) -> Plan:
        return self.model_copy(update={"content_hash": self.compute_hash()})

    def to_json(self) -> str:
        data = self.body()
        data["content_hash"] = self.content_hash or self.compute_hash()
        return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(data: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(data).encode()).hexdigest()
