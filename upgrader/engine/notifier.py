"""Engine events → webhook notifications, delivered in the background.

A webhook that hangs or fails costs its timeout and retries (seconds per event): sent inline, it
would hold a wave, or an emergency rollback, for that long.  Events therefore go on a queue that
one sender thread drains in order; the command closes the notifier when it is done, waiting a
bounded time for what is still queued (the process leaves with os._exit, which would drop it).
A failed notification never fails a run.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from upgrader.engine.admission import Clock
from upgrader.models.inventory import Inventory, Notify
from upgrader.vocabulary import NoticeKind

log = logging.getLogger(__name__)

QUEUE_LIMIT = 256  # events waiting to be sent; a run produces a handful, so reaching it means the sender is stuck
CLOSE_WAIT = 10.0  # seconds a command waits at its end for queued notifications


class Notifier:
    """``notifier(kind, component=…, version=…, run=…, **details)`` queues an event and returns at once."""

    def __init__(
        self, targets: Sequence[Notify], inventory: str, now: Clock, send: Callable[..., Any] | None = None
    ) -> None:
        self._targets = list(targets)
        self._inventory = inventory
        self._now = now
        self._send = send
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_LIMIT)
        self._thread: threading.Thread | None = None
        self.deliveries: list[Any] = []  # upgrader.notify.Delivery, in sending order

    def __call__(self, kind: str, *, component: str, version: str, run: str | None = None, **details: Any) -> None:
        known = NoticeKind(kind)  # a str from an engine: refused unless it is one of the kinds, as Journal.record
        if not self._targets:
            return
        from upgrader.notify import Event  # tenacity and urllib: only when there is someone to tell

        flat = {k: v if isinstance(v, str | int | float | bool) or v is None else str(v) for k, v in details.items()}
        event = Event(
            kind=known,
            at=self._now(),
            inventory=self._inventory,
            component=component,
            version=version,
            summary=str(details.get("message", "")),
            run_id=run,
            details=flat,
        )
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name="notify", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            log.warning("notification %s dropped: %d events already waiting for a stuck webhook", kind, QUEUE_LIMIT)

    def _drain(self) -> None:
        from upgrader.notify import send

        deliver = self._send or send
        while (event := self._queue.get()) is not None:
            for delivery in deliver(self._targets, event):
                self.deliveries.append(delivery)
                if delivery.status != "sent":
                    log.warning(
                        "notification %s to $%s: %s", event.kind, delivery.target, delivery.error or delivery.status
                    )

    def close(self, timeout: float = CLOSE_WAIT) -> bool:
        """Send what is queued, waiting at most ``timeout`` seconds; False if some may be left unsent."""
        if self._thread is None:
            return True
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return False
        self._thread.join(timeout)
        done = not self._thread.is_alive()
        if not done:
            log.warning("notifications still sending after %.0fs; leaving them", timeout)
        self._thread = None
        return done

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def notifier(inventory: Inventory, now: Clock) -> Notifier:
    return Notifier(inventory.notify, inventory.name, now)
