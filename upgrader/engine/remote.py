"""Calling the host agent: one program, one round trip, per-operation results as values."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any
from weakref import WeakKeyDictionary

from upgrader import agent
from upgrader.errors import TransportError
from upgrader.transport.base import Result, Stream, Transport


@dataclass(frozen=True)
class OpResult:
    op: str
    step: str | None
    ok: bool
    data: dict[str, Any]

    @property
    def error(self) -> str | None:
        return self.data.get("error")


@dataclass(frozen=True)
class AgentResult:
    host: str
    result: Result
    ops: list[OpResult] = field(default_factory=list)
    expected: int = 0

    @property
    def ok(self) -> bool:
        return self.result.ok and len(self.ops) == self.expected and all(o.ok for o in self.ops)

    @property
    def failed(self) -> OpResult | None:
        return next((o for o in self.ops if not o.ok), None)

    def op(self, name: str) -> OpResult | None:
        return next((o for o in self.ops if o.op == name), None)

    @property
    def error(self) -> str:
        if self.failed is not None:
            return f"{self.failed.op}: {self.failed.error}"
        if self.result.timed_out:
            return f"agent timed out after {self.result.duration:.1f}s"
        if not self.result.ok or len(self.ops) != self.expected:
            detail = (self.result.stderr or self.result.stdout).strip().splitlines()[-3:]
            return f"agent exited {self.result.exit_code}: {' / '.join(detail) or 'no output'}"
        return ""


def call(transport: Transport, *, component: str, root: str, run: str | None, ops: list[dict[str, Any]],
         timeout: float, python: str = "python3", idempotent: bool = False) -> AgentResult:
    """Run one agent program on the host and return per-operation results.

    The first call on a host starts the agent in serving mode (that call's program rides along on
    its command line); later calls send their program down the same process's stdin: no SSH exec,
    sudo, interpreter start-up or imports per call, which on many hosts sharing a few cores is most
    of what a round trip costs.  A stream that timed out or broke is dropped and the next call
    starts a fresh one.
    """
    program = {"component": component, "root": root, "run": run, "ops": ops}
    with _lock:
        held = _streams.get(transport)
    if held is not None and held[0] == python and held[1].alive:
        try:
            _ping(transport, held[1], program)
            result = held[1].exchange(agent.pack_program(program), until=agent.END, timeout=timeout)
        except TransportError:
            _forget(transport)
            if not idempotent:
                raise
            return call(transport, component=component, root=root, run=run, ops=ops, timeout=timeout,
                        python=python, idempotent=False)
    else:
        _forget(transport)
        stream = transport.stream(agent.command(dict(program, serve=True), python), sudo=True)
        with _lock:
            _streams[transport] = (python, stream)
        result = stream.exchange(None, until=agent.END, timeout=timeout)
    end = result.stdout.rsplit(agent.END, 1)
    if len(end) == 2 and end[1].strip().isdigit():
        result = replace(result, exit_code=int(end[1].strip()))
    else:  # no end line: the agent died or timed out; its process (if any) is not reused
        _forget(transport)
        if result.exit_code == 0:
            result = replace(result, exit_code=-1)
    parsed = [OpResult(r.get("op", "?"), r.get("step"), bool(r.get("ok")), r)
              for r in agent.parse_output(result.stdout)]
    return AgentResult(transport.endpoint.name, result, parsed, expected=len(ops))


def _ping(transport: Transport, stream: Stream, program: dict[str, Any]) -> None:
    """An empty program first, answered within the channel timeout, or the host counts as unreachable.

    Without it a program sent to a frozen host would wait in its buffers and run whenever the host
    thawed, long after the run had given up on it; a new SSH exec would not even have been opened.
    """
    empty = agent.pack_program(dict(program, ops=[]))
    pong = stream.exchange(empty, until=agent.END, timeout=transport.timeouts.channel)
    if not pong.ok or not pong.stdout.rstrip().endswith(agent.END + "0"):
        _forget(transport)
        raise TransportError(transport.endpoint.name,
                             f"the agent did not answer within {transport.timeouts.channel:g}s",
                             "the host may be frozen or overloaded; check it with `upgrader status`")


_streams: WeakKeyDictionary[Transport, tuple[str, Stream]] = WeakKeyDictionary()
_lock = threading.Lock()


def _forget(transport: Transport) -> None:
    with _lock:
        held = _streams.pop(transport, None)
    if held is not None:
        held[1].close()
