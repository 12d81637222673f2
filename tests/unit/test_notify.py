"""Webhook notifications against real HTTP servers on 127.0.0.1: success, 500s, a hang, secrecy of the URL."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from upgrader.models.inventory import Notify
from upgrader.notify import EVENTS, Event, payload, send
from upgrader.vocabulary import NoticeKind

SECRET = "/services/T000/B000/secret-token-do-not-log"
EVENT = Event(
    NoticeKind.CANARY_PASSED,
    dt.datetime(2026, 11, 28, 7, 0, tzinfo=dt.UTC),
    "na-equities-prod",
    "ordergw",
    "5.2.0",
    summary="ny5-oe01 healthy after 60s <bake>",
    run_id="r-1",
    details={"hosts": 1},
)


class Server:
    def __init__(self, status: int = 200, hang: float = 0.0) -> None:
        self.status, self.hang = status, hang
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((self.path, dict(self.headers), body))
                if outer.hang:
                    outer.release.wait(outer.hang)
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}{SECRET}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def no_sleep(_: float) -> None:
    pass


def test_json_post(server: Server) -> None:
    [result] = send([Notify(url_env="HOOK")], EVENT, environ={"HOOK": server.url})
    assert (result.status, result.http_status, result.attempts, result.target) == ("sent", 200, 1, "HOOK")
    path, headers, body = server.requests[0]
    assert path == SECRET and headers["Content-Type"] == "application/json"
    data = json.loads(body)
    assert data["event"] == "canary-passed" and data["version"] == "5.2.0" and data["details"] == {"hosts": 1}


def test_slack_payload(server: Server) -> None:
    [result] = send([Notify(url_env="HOOK", format="slack")], EVENT, environ={"HOOK": server.url})
    assert result.ok
    data = json.loads(server.requests[0][2])
    assert set(data) == {"text", "blocks"}
    assert data["text"].startswith("✔ upgrader canary-passed: ordergw 5.2.0 on na-equities-prod")
    assert data["blocks"][0]["type"] == "section" and "&lt;bake&gt;" in data["blocks"][0]["text"]["text"]


@pytest.mark.parametrize("kind", EVENTS)
def test_every_event_has_both_payloads(kind: str) -> None:
    event = Event(kind, EVENT.at, "inv", "c", "1.0")  # type: ignore[arg-type]
    assert payload(event, "json")["event"] == kind
    assert kind in payload(event, "slack")["text"]


def test_server_error_is_retried_a_bounded_number_of_times() -> None:
    failing = Server(status=500)
    try:
        [result] = send([Notify(url_env="HOOK")], EVENT, environ={"HOOK": failing.url}, retries=2, sleep=no_sleep)
    finally:
        failing.close()
    assert (result.status, result.http_status, result.attempts) == ("failed", 500, 3)
    assert len(failing.requests) == 3


def test_client_error_is_not_retried() -> None:
    rejecting = Server(status=404)
    try:
        [result] = send([Notify(url_env="HOOK")], EVENT, environ={"HOOK": rejecting.url}, sleep=no_sleep)
    finally:
        rejecting.close()
    assert (result.status, result.attempts, len(rejecting.requests)) == ("failed", 1, 1)


def test_hanging_server_times_out() -> None:
    hanging = Server(hang=30.0)
    try:
        started = time.monotonic()
        [result] = send(
            [Notify(url_env="HOOK")], EVENT, environ={"HOOK": hanging.url}, timeout=0.3, retries=1, sleep=no_sleep
        )
        elapsed = time.monotonic() - started
    finally:
        hanging.close()
    assert result.status == "failed" and "timed out" in result.error and result.attempts == 2
    assert elapsed < 3.0


def test_unset_or_bad_url_is_skipped_and_nothing_raises() -> None:
    results = send([Notify(url_env="UNSET"), Notify(url_env="BAD")], EVENT, environ={"BAD": "file:///etc/passwd"})
    assert [(r.status, r.target) for r in results] == [("skipped", "UNSET"), ("skipped", "BAD")]
    assert "passwd" not in repr(results)


def test_unreachable_server_fails_quietly() -> None:
    probe = Server()
    url = probe.url
    probe.close()  # nothing listens on that port any more
    [result] = send([Notify(url_env="HOOK")], EVENT, environ={"HOOK": url}, retries=1, sleep=no_sleep)
    assert result.status == "failed" and result.attempts == 2


def test_secret_url_never_logged_or_returned(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    failing = Server(status=500)
    caplog.set_level(logging.DEBUG)
    try:
        env = {"OK_HOOK": server.url, "BAD_HOOK": failing.url, "ODD_HOOK": "https://[bad" + SECRET}
        results = send([Notify(url_env=name) for name in env], EVENT, environ=env, sleep=no_sleep, timeout=1)
    finally:
        failing.close()
    assert [r.status for r in results] == ["sent", "failed", "failed"]
    assert "secret-token" not in caplog.text and "secret-token" not in repr(results)
    assert "$OK_HOOK" in caplog.text and "$BAD_HOOK" in caplog.text


def test_background_sender_never_stalls_the_caller_and_delivers_in_order() -> None:
    """A hanging webhook: each event costs the caller nothing; close() waits a bounded time."""
    from upgrader.engine.notifier import Notifier

    hanging = Server(hang=30.0)
    ok = Server()
    try:
        env = {"SLOW": hanging.url, "FAST": ok.url}

        def deliver(targets, event):  # type: ignore[no-untyped-def]
            return send(targets, event, environ=env, timeout=0.5, retries=1, sleep=no_sleep)

        notify = Notifier([Notify(url_env="SLOW"), Notify(url_env="FAST")], "inv", lambda: EVENT.at, send=deliver)
        started = time.monotonic()
        for kind in ("run-started", "canary-passed", "finished"):
            notify(kind, component="ordergw", version="5.2.0", run="r-1", message=kind)
        queued = time.monotonic() - started
        assert notify.close(timeout=10)
        finished = time.monotonic() - started
    finally:
        hanging.close()
        ok.close()
    assert queued < 0.1  # three events, each of which costs ~1 s against the hanging hook
    assert finished >= 2.5  # they were really sent, in the background
    assert [json.loads(r[2])["event"] for r in ok.requests] == ["run-started", "canary-passed", "finished"]
    assert [(d.target, d.status) for d in notify.deliveries][:2] == [("SLOW", "failed"), ("FAST", "sent")]


def test_close_gives_up_after_its_bound() -> None:
    from upgrader.engine.notifier import Notifier

    hanging = Server(hang=30.0)
    try:

        def deliver(targets, event):  # type: ignore[no-untyped-def]
            return send(targets, event, environ={"SLOW": hanging.url}, timeout=20, retries=0, sleep=no_sleep)

        notify = Notifier([Notify(url_env="SLOW")], "inv", lambda: EVENT.at, send=deliver)
        notify("failed", component="ordergw", version="5.2.0")
        started = time.monotonic()
        assert notify.close(timeout=0.5) is False
        assert time.monotonic() - started < 2
    finally:
        hanging.close()
