"""Calling the host agent: one program, one round trip, per-operation results as values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from upgrader import agent
from upgrader.transport.base import Result, Transport


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
    program = {"component": component, "root": root, "run": run, "ops": ops}
    result = transport.run(agent.command(program, python), sudo=True, timeout=timeout, idempotent=idempotent)
    parsed = [OpResult(r.get("op", "?"), r.get("step"), bool(r.get("ok")), r)
              for r in agent.parse_output(result.stdout)]
    return AgentResult(transport.endpoint.name, result, parsed, expected=len(ops))
