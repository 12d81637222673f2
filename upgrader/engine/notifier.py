"""Adapting engine events to webhook notifications; a failed notification never fails a run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from upgrader.engine.admission import Clock
from upgrader.models.inventory import Inventory

log = logging.getLogger(__name__)


def notifier(inventory: Inventory, now: Clock) -> Callable[..., None]:
    if not inventory.notify:
        return lambda *a, **k: None
    from upgrader.notify import Event, send

    def notify(kind: str, *, component: str, version: str, run: str | None = None, **details: Any) -> None:
        flat = {k: v if isinstance(v, str | int | float | bool) or v is None else str(v) for k, v in details.items()}
        event = Event(kind=kind, at=now(), inventory=inventory.name, component=component,  # type: ignore[arg-type]
                      version=version, summary=str(details.get("message", "")), run_id=run, details=flat)
        for delivery in send(inventory.notify, event):
            if delivery.status != "sent":
                log.warning("notification %s to $%s: %s", kind, delivery.target, delivery.error or delivery.status)

    return notify
