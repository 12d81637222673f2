"""Best-effort webhook notifications: JSON POSTs (or Slack-shaped ones) on run events.

The webhook URL is a secret (Slack hook URLs authorise posting): it is read
from the environment variable the inventory names, at send time, and is never
logged, journaled or returned — results and logs name the variable instead.
Sending never raises into the caller: each target gets a ``Delivery`` saying
what happened, after a short timeout and a bounded number of retries.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from upgrader.models.inventory import Notify
from upgrader.vocabulary import NoticeKind

log = logging.getLogger(__name__)


EVENTS: tuple[NoticeKind, ...] = tuple(NoticeKind)
_ICONS: dict[NoticeKind, str] = {  # every kind has one (tests/unit/test_notify.py)
    NoticeKind.RUN_STARTED: "▶",
    NoticeKind.CANARY_PASSED: "✔",
    NoticeKind.FAILED: "✖",
    NoticeKind.ROLLED_BACK: "↩",
    NoticeKind.FINISHED: "■",
    NoticeKind.REFUSED: "⊘",
    NoticeKind.ROLLBACK_STARTED: "⏪",
    NoticeKind.ROLLBACK_FINISHED: "↩",
    NoticeKind.AUDIT_SKEW: "≠",
    NoticeKind.GATE_WAITING: "⏸",
    NoticeKind.PROMOTED: "⏩",
    NoticeKind.ABORTED: "⏹",
    NoticeKind.GUARD_BYPASSED: "⚠",
    NoticeKind.HALTED: "⏸",
}


@dataclass(frozen=True)
class Event:
    kind: NoticeKind
    at: dt.datetime
    inventory: str
    component: str
    version: str
    summary: str = ""
    run_id: str | None = None
    details: Mapping[str, str | int | float | bool | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """What happened for one target; ``target`` is the env var name, never the URL."""

    target: str
    status: Literal["sent", "failed", "skipped"]
    attempts: int = 0
    http_status: int | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "sent"


def payload(event: Event, fmt: str) -> dict[str, Any]:
    if fmt == "slack":
        return _slack(event)
    return {
        "event": event.kind,
        "at": event.at.isoformat(),
        "inventory": event.inventory,
        "component": event.component,
        "version": event.version,
        "summary": event.summary,
        "run_id": event.run_id,
        "details": dict(event.details),
    }


def _slack(event: Event) -> dict[str, Any]:
    title = f"{_ICONS[event.kind]} upgrader {event.kind}: {event.component} {event.version} on {event.inventory}"
    body = _mrkdwn(event.summary) if event.summary else ""
    context = [f"at {event.at.isoformat()}"] + ([f"run {event.run_id}"] if event.run_id else [])
    context += [f"{k}: {v}" for k, v in sorted(event.details.items())]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_mrkdwn(title)}*" + (f"\n{body}" if body else "")}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _mrkdwn(" · ".join(context))}]},
    ]
    return {"text": title + (f" — {event.summary}" if event.summary else ""), "blocks": blocks}


def _mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def send(
    targets: Iterable[Notify],
    event: Event,
    *,
    environ: Mapping[str, str] | None = None,
    timeout: float = 3.0,
    retries: int = 2,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Delivery]:
    """POST ``event`` to every target; never raises.  ``retries`` extra attempts after 5xx/network errors."""
    env = os.environ if environ is None else environ
    results = []
    for target in targets:
        try:
            result = _send_one(target, event, env, timeout, retries, backoff, sleep)
        except Exception as exc:  # best effort: a notification must never break a run
            result = Delivery(target.url_env, "failed", error=f"unexpected {type(exc).__name__}")
        _log(event, result)
        results.append(result)
    return results


class _Retryable(Exception):
    """A 5xx, 429 or network error: worth another attempt."""

    def __init__(self, delivery: Delivery) -> None:
        super().__init__(delivery.error)
        self.delivery = delivery


def _send_one(
    target: Notify,
    event: Event,
    env: Mapping[str, str],
    timeout: float,
    retries: int,
    backoff: float,
    sleep: Callable[[float], None],
) -> Delivery:
    url = env.get(target.url_env, "").strip()
    if not url:
        return Delivery(target.url_env, "skipped", error=f"${target.url_env} is not set")
    if not url.startswith(("https://", "http://")):
        return Delivery(target.url_env, "skipped", error=f"${target.url_env} is not an http(s) URL")
    body = json.dumps(payload(event, target.format), sort_keys=True).encode()
    attempts = 0

    def attempt() -> Delivery:
        nonlocal attempts
        attempts += 1
        status, error, retryable = _post(url, body, timeout)
        if error == "" and status is not None and 200 <= status < 300:
            return Delivery(target.url_env, "sent", attempts, status)
        failed = Delivery(target.url_env, "failed", attempts, status, error.replace(url, f"${target.url_env}"))
        if retryable:
            raise _Retryable(failed)
        return failed

    retrying = Retrying(
        stop=stop_after_attempt(retries + 1),
        wait=wait_linear(backoff),
        sleep=sleep,
        retry=retry_if_exception_type(_Retryable),
        reraise=True,
    )
    try:
        return retrying(attempt)
    except _Retryable as exc:
        return exc.delivery


def wait_linear(backoff: float) -> Callable[[RetryCallState], float]:
    """backoff x attempt seconds between attempts (0.5 s, 1 s, …): a webhook that is down stays cheap."""
    return lambda state: backoff * state.attempt_number


def _post(url: str, body: bytes, timeout: float) -> tuple[int | None, str, bool]:
    """(HTTP status, error text without the URL, worth retrying)."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "upgrader"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # http(s) only: checked by the caller
            return response.status, "", False
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, f"HTTP {exc.code}", exc.code >= 500 or exc.code == 429
    except TimeoutError:
        return None, f"timed out after {timeout:g}s", True
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return None, f"timed out after {timeout:g}s", True
        return None, f"cannot connect: {type(reason).__name__}", True
    except OSError as exc:
        return None, f"network error: {type(exc).__name__}", True


def _log(event: Event, result: Delivery) -> None:
    where = f"${result.target}"
    if result.ok:
        log.info("notify %s: sent %s (HTTP %s, %d attempt(s))", where, event.kind, result.http_status, result.attempts)
    elif result.status == "skipped":
        log.info("notify %s: skipped %s: %s", where, event.kind, result.error)
    else:
        log.warning(
            "notify %s: could not send %s after %d attempt(s): %s", where, event.kind, result.attempts, result.error
        )
