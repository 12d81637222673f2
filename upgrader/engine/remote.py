"""Calling the host agent: one program, one round trip, per-operation results as values."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from upgrader import agent
from upgrader.errors import TransportError
from upgrader.transport.base import Result, Stream, Transport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpResult:
    op: str
    step: str | None
    ok: bool
    data: dict[str, Any]

    @property
    def error(self) -> str | None:
        return self.data.get("error")

    @property
    def busy(self) -> bool:
        """The agent's word that another upgrader program still runs on the host (its program lock)."""
        return self.data.get("busy") is True


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
    def handed_over(self) -> str | None:
        """Why this run no longer holds the host, or None: the agent reports a lost lock (taken over by
        another run, gone, or held by another program still running) as the failure of its lock op."""
        failed = self.failed
        if failed is None or failed.op != "lock":
            return None
        return failed.error or "this run no longer holds the lock"

    @property
    def busy(self) -> bool:
        """Another upgrader program still runs on the host: nothing ran, the same program may be sent again."""
        return self.failed is not None and self.failed.busy

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


class Session:
    """One host's agent session: its transport and the serving agent process on it, if one is running.

    Owned by the run's Pool (``Pool.session``), which closes it; nothing else keeps one.  The first
    call starts the agent in serving mode; later calls reuse its process.  An early ``start`` (in a
    background thread) leaves its outcome here for the first call.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._lock = threading.Lock()
        self._stream: tuple[str, Stream] | None = None  # (python, the serving agent's stream)
        self._starting: _Start | None = None  # an early start under way
        self._failed: _Start | None = None  # an early start that failed, not yet reported

    @property
    def host(self) -> str:
        return self.transport.endpoint.name

    def _held(self) -> tuple[str, Stream] | None:
        with self._lock:
            return self._stream

    def _keep(self, python: str, stream: Stream) -> bool:
        """Keep ``stream`` as the serving agent unless one is kept already; True if kept."""
        with self._lock:
            if self._stream is not None:
                return False
            self._stream = (python, stream)
            return True

    def forget(self) -> None:
        """Drop the serving agent (timed out, broken, or at the end): the next call starts a fresh one."""
        with self._lock:
            held, self._stream = self._stream, None
        if held is not None:
            held[1].close()

    close = forget

    # The session's own work: one agent program per call, the serving agent kept between calls.
    def call(
        self,
        *,
        component: str,
        root: str,
        run: str | None,
        ops: list[dict[str, Any]],
        timeout: float,
        python: str = "python3",
        idempotent: bool = False,
    ) -> AgentResult:
        """Run one agent program on the host and return per-operation results.

        The first call on a host starts the agent in serving mode (its source and that call's program
        go down its stdin first); later calls send their program down the same process's stdin: no SSH exec,
        sudo, interpreter start-up or imports per call, which on many hosts sharing a few cores is most
        of what a round trip costs.  A stream that timed out or broke is dropped and the next call
        starts a fresh one (see _answering).
        """
        transport = self.transport
        program = {"component": component, "root": root, "run": run, "ops": ops}
        began = time.monotonic()
        fresh = self._await_start()
        stream = self._answering(python, program, fresh)
        if stream is not None:
            try:
                result = stream.exchange(agent.pack_program(program), until=agent.END, timeout=timeout)
            except TransportError:
                self.forget()
                if not idempotent:
                    raise  # the program may have run: the caller decides what an unknown outcome means
                return self.call(
                    component=component,
                    root=root,
                    run=run,
                    ops=ops,
                    timeout=timeout,
                    python=python,
                    idempotent=False,
                )
        else:
            stream = transport.stream(agent.serving_command(python), sudo=True)
            self.forget()
            self._keep(python, stream)
            result = stream.exchange(agent.serving_input(program), until=agent.END, timeout=timeout)
        end = result.stdout.rsplit(agent.END, 1)
        if len(end) == 2 and end[1].strip().isdigit():
            result = replace(result, exit_code=int(end[1].strip()))
        else:  # no end line: the agent died or timed out; its process (if any) is not reused
            self.forget()
            if result.exit_code == 0:
                result = replace(result, exit_code=-1)
        parsed = [
            OpResult(r.get("op", "?"), r.get("step"), bool(r.get("ok")), r) for r in agent.parse_output(result.stdout)
        ]
        if log.isEnabledFor(logging.DEBUG):  # -vv: what each host was asked, what it answered, how long it took
            log.debug(
                "%s: agent %s: %s in %.2fs (exit %d)",
                self.host,
                component,
                ", ".join(f"{o.op} {'ok' if o.ok else 'FAILED'}" for o in parsed) or "no answer",
                time.monotonic() - began,
                result.exit_code,
            )
        return AgentResult(self.host, result, parsed, expected=len(ops))

    def _answering(self, python: str, program: dict[str, Any], fresh: Stream | None = None) -> Stream | None:
        """The host's serving agent if it answers an empty program within the channel timeout; None when
        there is none or it has gone (a fresh one is then started; nothing of ``program`` was sent yet).
        ``fresh``: the stream whose early start answered while this call waited for it (``_await_start``):
        that answer is as recent as an empty program's would be, so it is not asked again.

        A program is only ever sent after this answer.  Otherwise a program sent to a frozen host would
        wait in its buffers and run whenever the host thawed, long after the run had given up on it (a
        new SSH exec would not even have been opened).  So a silent agent is an unreachable host.
        """
        held = self._held()
        timeouts = self.transport.timeouts
        if held is None or held[0] != python or not held[1].alive:
            self.forget()
            return None
        if fresh is not None and held[1] is fresh:
            return fresh
        try:
            pong = held[1].exchange(
                agent.pack_program(dict(program, ops=[])), until=agent.END, timeout=timeouts.channel
            )
        except TransportError:  # the connection went: a new stream reconnects
            self.forget()
            return None
        if pong.timed_out:
            self.forget()
            raise TransportError(
                self.host,
                f"the agent did not answer within {timeouts.channel:g}s",
                "the host may be frozen or overloaded; check it with `upgrader status`",
            )
        if not self._answered(pong):  # it exited: start another
            self.forget()
            return None
        return held[1]

    def start(self, python: str = "python3") -> None:
        """Connect and start the host's serving agent ahead of its first call (meant for a background thread).

        sshd, PAM, sudo and the interpreter's start on the host then overlap the controller's own
        start-up (imports, loading and validating the inputs) instead of following it.  The agent runs
        an empty program, so nothing happens on the host but the start.  The first call waits for this
        to finish and then uses the agent like any other; if the start failed on the connection, the
        first call raises that failure rather than waiting out the same timeouts again.
        """
        transport = self.transport
        pending = _Start()
        with self._lock:
            if self._stream is not None or self._starting is not None or self._failed is not None:
                return  # running, starting, or failed with an error its first call will report
            self._starting = pending
        stream: Stream | None = None
        try:
            stream = transport.stream(agent.serving_command(python), sudo=True)
            answer = stream.exchange(agent.serving_input(_EMPTY), until=agent.END, timeout=transport.timeouts.channel)
            if self._answered(answer):
                if self._keep(python, stream):
                    pending.answered, stream = stream, None
            elif answer.timed_out:
                pending.error = TransportError(
                    self.host,
                    f"the agent did not start within {transport.timeouts.channel:g}s",
                    "the host may be frozen or overloaded; check it with `upgrader status`",
                )
        except TransportError as exc:
            pending.error = exc
        except Exception:  # an early start is an optimisation: the first call starts the agent as usual
            log.debug("%s: agent not started early", self.host, exc_info=True)
        finally:
            if stream is not None:
                stream.close()
            with self._lock:
                self._starting = None
                if pending.error is not None:
                    self._failed = pending
            pending.done.set()

    @staticmethod
    def _answered(result: Result) -> bool:
        """The agent ran the (empty) program and is serving: its output ends with a clean END line."""
        return result.stdout.rstrip().endswith(agent.END + "0")

    def _await_start(self) -> Stream | None:
        """Wait for an early ``start`` on this host; raise what it met on the connection, once.

        Returns the stream it started if it was still starting when this call came and its agent
        answered: the answer arrived while this call waited, just now (None otherwise).
        """
        with self._lock:
            pending = self._starting or self._failed
            self._failed = None
        if pending is None:
            return None
        t = self.transport.timeouts
        # start() is bounded by the transport's own timeouts; this cap only guards against a bug there.
        pending.done.wait(t.attempts * t.handshake + t.channel + 5)
        with self._lock:
            self._failed = None
        if pending.error is not None:
            error, pending.error = pending.error, None
            raise error
        return pending.answered if pending.done.is_set() else None


def call(session: Session, **kwargs: Any) -> AgentResult:
    """``session.call(**kwargs)``: for callers outside the engine that hold a session and a stand-in for it."""
    return session.call(**kwargs)


def start(session: Session, python: str = "python3") -> None:
    """``session.start(python)``: the early start, as a function for a background pool (endpoints.Pool.connect)."""
    session.start(python)


class _Start:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: TransportError | None = None
        self.answered: Stream | None = None  # the stream kept as the serving agent, once it answered


_EMPTY: dict[str, Any] = {"component": "", "root": "", "run": None, "ops": []}
