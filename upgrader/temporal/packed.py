"""The two things a Temporal run sends that name every host, packed (engine/packing.py), and back.

- The run-end journal record: the workflow sends its ``hosts`` map ({host: {state, detail, version}}) as
  ``hosts_packed``; the control worker's ``record`` activity (control.py) expands it into ``hosts`` before
  appending, so the journal line is byte for byte the unpacked record's (``status``, ``runs``, ``show``, ``report``,
  ``resume`` read it unchanged).  A record of older workflow code, with ``hosts`` itself, is written as it is.
- The workflow's result (also the ``outcome`` of its ``progress`` answers): ``rows_packed`` instead of one
  ``[host, dc, state, detail]`` row per host; ``rows_of`` gives the rows back, from older results too.

Both grow by a host's name (~13 B) instead of its fields (~60-80 B).  Measured at 10,000 hosts in 10
datacenters (names like ``dc00-00001``), one in 50 failed with its own message
(tests/unit/test_temporal_fleet_end.py): the run-end `record` input is 154 KB (790 KB unpacked, over
limits.PAYLOAD_BUDGET's 512 KiB), the result 154 KB (511 KB unpacked), the ended run's `progress` answer
256 KB (613 KB).  Longer host names cost their length: ~50-character names would bring 10,000 hosts to the
budget again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from upgrader.engine import packing
from upgrader.vocabulary import Event

HOSTS_PACKED = "hosts_packed"  # a run-end record's hosts as the workflow sends them (never in a journal)
ROWS_PACKED = "rows_packed"  # the workflow result's rows
ROW_FIELDS = ("dc", "state", "detail")
Row = tuple[str, str, str, str]  # host, datacenter, state, detail: the summary table's row


def pack_run_end(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A run-end record's fields with its ``hosts`` map packed, as ``hosts_packed``."""
    out = {k: v for k, v in fields.items() if k != "hosts"}
    out[HOSTS_PACKED] = packing.pack(dict(fields["hosts"]).items())
    return out


def expand_record(entry: Any) -> Any:
    """A record as the journal holds it: a run-end's ``hosts_packed`` expanded into ``hosts`` (anything else
    as it came).  ValueError (the ``record`` activity's refusal, not retried) for a packed value of another
    shape, one beside ``hosts``, or one on another event."""
    if not isinstance(entry, dict) or HOSTS_PACKED not in entry:
        return entry  # the record activity's own checks judge the rest
    if entry.get("event") != Event.RUN_END:
        raise ValueError(f"{entry.get('event')!r:.60} record with {HOSTS_PACKED!r}: only a run-end packs its hosts")
    if "hosts" in entry:
        raise ValueError(f"run-end record with both 'hosts' and {HOSTS_PACKED!r}: which one is meant is unclear")
    out = {k: v for k, v in entry.items() if k != HOSTS_PACKED}
    out["hosts"] = packing.expand(entry[HOSTS_PACKED], f"run-end {HOSTS_PACKED}")
    return out


def pack_rows(rows: Iterable[Row]) -> list[list[Any]]:
    """The result's rows grouped by identical (datacenter, state, detail)."""
    return packing.pack((host, dict(zip(ROW_FIELDS, rest, strict=True))) for host, *rest in rows)


def rows_of(outcome: Mapping[str, Any]) -> list[Row]:
    """The summary rows of a workflow result: ``rows_packed`` expanded (group after group, each where its first
    host came, its hosts in their order), or the plain ``rows`` of a result from older workflow code.
    ValueError for a packed value of another shape."""
    if ROWS_PACKED not in outcome:
        return [(str(h), str(dc), str(st), str(d)) for h, dc, st, d in outcome["rows"]]
    hosts = packing.expand(outcome[ROWS_PACKED], f"the result's {ROWS_PACKED}")
    return [(h, str(f.get("dc", "")), str(f.get("state", "")), str(f.get("detail", ""))) for h, f in hosts.items()]
