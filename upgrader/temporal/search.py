"""Search attributes: how a run is found from any controller (`upgrader runs --engine temporal`).

A controller's state directory knows only the runs it started; the Temporal server knows every run
in the namespace.  Each run is started with its component, version, datacenters and operator, and its
phase and status are upserted as it goes (``follow``, called by the workflow for each journal record),
so a visibility query lists them all.  The server must have them registered, once per namespace:

    temporal operator search-attribute create --namespace NS --name UpgraderComponent --type Keyword ...

(``registration()`` gives the pairs; the tests' dev server is started with them).  A server without
them is told once at start (client.start warns and starts the run without them); such a run is not
listed, and its workflow upserts nothing (``follow`` checks what the run was started with).

Sizes: a value is at most 2 KiB and all of them 40 KiB (limits.SEARCH_ATTRIBUTE_VALUE/_TOTAL); the
largest here is the datacenter list, a few names.  Each upsert is one history event: they happen per
phase, gate and run end, never per host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributePair, SearchAttributeUpdate, TypedSearchAttributes

from upgrader.vocabulary import Event

COMPONENT = SearchAttributeKey.for_keyword("UpgraderComponent")
VERSION = SearchAttributeKey.for_keyword("UpgraderVersion")
DATACENTERS = SearchAttributeKey.for_keyword_list("UpgraderDatacenters")
PHASE = SearchAttributeKey.for_keyword("UpgraderPhase")
STATUS = SearchAttributeKey.for_keyword("UpgraderStatus")
OPERATOR = SearchAttributeKey.for_keyword("UpgraderOperator")
KEYS = (COMPONENT, VERSION, DATACENTERS, PHASE, STATUS, OPERATOR)
TYPES = {"KEYWORD": "Keyword", "KEYWORD_LIST": "KeywordList"}  # the CLI's spelling of each indexed type

RUNNING, WAITING, STARTING = "running", "waiting", "starting"
QUERY = f"WorkflowType = 'upgrade' AND {COMPONENT.name} IS NOT NULL"  # the runs this tool started


def registration() -> list[str]:
    """NAME=Type for each attribute: `temporal server start-dev --search-attribute` and the operator's create."""
    return [f"{k.name}={TYPES[k.indexed_value_type.name]}" for k in KEYS]


@dataclass(frozen=True)
class Labels:
    """What a run is started with: who and what, for the visibility query; and its memo (the run id)."""

    run: str
    component: str
    version: str
    datacenters: list[str]
    operator: str

    def attributes(self) -> TypedSearchAttributes:
        return TypedSearchAttributes(
            [
                SearchAttributePair(COMPONENT, self.component),
                SearchAttributePair(VERSION, self.version),
                SearchAttributePair(DATACENTERS, sorted(self.datacenters)),
                SearchAttributePair(PHASE, STARTING),
                SearchAttributePair(STATUS, RUNNING),
                SearchAttributePair(OPERATOR, self.operator),
            ]
        )

    def memo(self) -> dict[str, str]:
        return {"run": self.run}  # a few bytes (the server warns past 2 KiB: limits.MEMO_WARN)


def follow(event: str, data: Mapping[str, Any]) -> None:
    """In the workflow, for each journal record: upsert the phase and status it changes (most change none)."""
    if workflow.info().typed_search_attributes.get(COMPONENT) is None:
        return  # started without them (a server without them registered, or a test): nothing to update
    updates = _updates(event, data)
    if updates:
        workflow.upsert_search_attributes(updates)


def _updates(event: str, data: Mapping[str, Any]) -> list[SearchAttributeUpdate[Any]]:
    if event == Event.PHASE_BEGIN:
        where = data.get("datacenter") or "global"
        phase = f"{int(data.get('phase', 0)) + 1} {data.get('kind')} {where}"
        return [PHASE.value_set(phase), STATUS.value_set(RUNNING)]
    if event == Event.GATE_WAIT:
        return [STATUS.value_set(WAITING), PHASE.value_set(f"gate {data.get('gate')}")]
    if event == Event.GATE_END:
        return [STATUS.value_set(RUNNING)]
    if event == Event.ROLLBACK_BEGIN:
        return [PHASE.value_set("rollback")]
    if event == Event.RUN_END:
        return [STATUS.value_set(str(data.get("status"))), PHASE.value_set("ended")]
    return []
