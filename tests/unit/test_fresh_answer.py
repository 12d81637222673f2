"""A program goes to a host's agent only right after that agent answered (engine/remote.py).

Either the early start's own answer, when the call was already waiting for it, or an empty program
(the pong) asked just before.  Real agent processes on fake hosts (tests/fakes/agent_host.py); what
is counted is every line the controller writes to the agent, in order.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.agent_host import AgentStream, FakeHosts
from upgrader.engine import remote
from upgrader.transport.base import Result

ROOT = "/opt/app"


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[FakeHosts]:
    lab = FakeHosts(tmp_path / "hosts")
    lab.add("h1").install(ROOT, "1.0")
    yield lab
    lab.close()


class Wire:
    """What the controller sends each agent (``empty`` for an empty program), and a gate that holds the
    early start's answer back until the test opens it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        original = AgentStream.exchange

        def exchange(stream: AgentStream, line: str | None, *, until: str, timeout: float) -> Result:
            if line is not None:
                ops = json.loads(base64.b64decode(line.rsplit("\n", 1)[-1]))["ops"]
                self.sent.append(",".join(o["op"] for o in ops) or "empty")
            self.gate.wait(30)
            return original(stream, line, until=until, timeout=timeout)

        monkeypatch.setattr(AgentStream, "exchange", exchange)


def facts(session: remote.Session) -> remote.AgentResult:
    return remote.call(session, component="app", root=ROOT, run=None, ops=[{"op": "facts"}], timeout=30)


def waiting_in_await_start(thread: threading.Thread) -> bool:
    frame: Any = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == "_await_start":
            return True
        frame = frame.f_back
    return False


def test_a_call_that_waited_for_the_early_start_sends_its_program_right_after_that_answer(
    hosts: FakeHosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = Wire(monkeypatch)
    session = hosts.pool().session("h1")
    wire.gate.clear()  # the agent's first answer is held back: the start is under way
    starting = threading.Thread(target=remote.start, args=(session,))
    starting.start()
    out: list[remote.AgentResult] = []
    calling = threading.Thread(target=lambda: out.append(facts(session)))
    calling.start()
    while not waiting_in_await_start(calling):
        calling.join(0.01)
    wire.gate.set()
    starting.join(30)
    calling.join(30)
    assert out and out[0].ok and out[0].ops[0].data["installed"] == "1.0"
    assert wire.sent == ["empty", "facts"], "the start's answer came while the call waited: no second empty program"


def test_an_agent_that_answered_before_the_call_is_asked_again_first(
    hosts: FakeHosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = Wire(monkeypatch)
    session = hosts.pool().session("h1")
    remote.start(session)  # answered and idle since: it may have gone silent in the meantime
    res = facts(session)
    assert res.ok
    assert wire.sent == ["empty", "empty", "facts"]
    assert facts(session).ok and wire.sent[3:] == ["empty", "facts"], "each later call asks first too"


def test_a_call_after_a_failed_start_is_told_the_failure_and_sends_nothing(
    hosts: FakeHosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = Wire(monkeypatch)
    hosts["h1"].unreachable = True
    session = hosts.pool().session("h1")
    remote.start(session)
    with pytest.raises(Exception, match="unreachable"):
        facts(session)
    assert wire.sent == []
