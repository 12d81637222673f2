"""Running programs: one per line of stdin, each operation journaled and reported."""

from __future__ import annotations

import base64
import json
import os
import sys
import time

from .errors import OpFailed, TakenOver
from .operations import OPS
from .program_lock import ProgramLock, check_takeover
from .protocol import END, MARKER, MAX_TAKEOVER_WAIT, OPERATIONS, READ_ONLY, TAKEOVER_WAIT
from .state import append_journal, now, record_root, recorded_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .shapes import Ctx, Record, Spec


def emit(record: Record) -> None:
    sys.stdout.write(MARKER + json.dumps(record, sort_keys=True) + "\n")
    sys.stdout.flush()


def main() -> int:
    """Serve the programs sent on stdin (bootstrap.py has read what came before them)."""
    os.umask(0o022)
    return serve()


def serve() -> int:
    """Run one program per line of stdin (base64 JSON) until EOF.

    The controller keeps this process for the whole run, so later programs on the host cost no
    SSH exec, sudo, interpreter start or imports.  Each program's output ends with an END line
    carrying its status.  EOF (the controller closed the connection or died) ends the process.
    """
    for line in iter(sys.stdin.readline, ""):
        status = run_program(json.loads(base64.b64decode(line.strip())))
        sys.stdout.write(f"{END}{status}\n")
        sys.stdout.flush()
    return 0


def program_kind(program: Spec) -> str | None:
    """The kind of run (apply, rollback, unlock) its lock operation names, or None."""
    for step in program.get("ops", []):
        if step.get("op") == "lock":
            kind = step.get("kind")
            return kind if isinstance(kind, str) else None
    return None


def program_lock_mode(program: Spec) -> tuple[bool, float | None]:
    """(needs the program lock, takeover wait or None): read-only programs skip it; handover/break take over."""
    ops = program.get("ops", [])
    needs = any(step.get("op") in OPS and step.get("op") not in READ_ONLY for step in ops)
    for step in ops:
        if step.get("op") == "lock" and step.get("mode") in ("handover", "break"):
            wait = step.get("takeover_wait", TAKEOVER_WAIT)
            wait = wait if isinstance(wait, (int, float)) and 0 <= wait <= MAX_TAKEOVER_WAIT else TAKEOVER_WAIT
            return True, float(wait)
    return needs, None


def run_program(program: Spec) -> int:
    ctx = {
        "component": program["component"],
        "run": program.get("run"),
        "root": program["root"],
        "kind": program_kind(program),
    }
    ops = program["ops"]
    needs, takeover = program_lock_mode(program)
    if not ctx["root"]:  # no layout sent: where this host's record says the component is installed
        ctx["root"] = recorded_root(ctx["component"])
    lock = None
    try:
        if needs:
            try:
                lock = ProgramLock(ctx)
                if takeover is None:
                    lock.acquire()
                else:
                    ctx["takeover"] = lock.take_over(takeover)
                if ctx["root"]:
                    record_root(ctx["component"], ctx["root"])
            except (OpFailed, OSError) as exc:
                detail = exc.detail if isinstance(exc, OpFailed) else {"errno": exc.errno}
                # Busy or taken over is the lock's failure (the controller's "handed over"); anything else
                # (an insecure state directory, say) is reported as the first operation's.
                lost = detail.get("busy") or detail.get("handed_over") or "holder" in detail
                emit(
                    dict(
                        detail,
                        i=0,
                        op="lock" if lost else ops[0]["op"],
                        step=ops[0].get("step"),
                        ok=False,
                        seconds=0,
                        error=str(exc),
                    )
                )
                return 1
        return run_ops(ctx, ops, lock)
    finally:
        if lock is not None:
            lock.release()


def run_ops(ctx: Ctx, ops: list[Spec], lock: ProgramLock | None) -> int:
    ctx["lock"] = lock
    status = 0
    for index, step in enumerate(ops):
        name = step["op"]
        where = step.get("step") or name
        if status and not step.get("always"):
            continue  # after a failure only the steps that must always run (a lock's release) still run
        try:
            if index:
                check_takeover(ctx)  # a rollback wants the host: end here, between operations
        except TakenOver as exc:
            return taken_over(ctx, index, step, exc, "before " + where)
        if name not in OPS:  # a controller newer than this agent, say: nothing ran, so nothing is journaled
            error = "unknown operation {!r}; this agent runs {}".format(name, ", ".join(OPERATIONS))
            emit({"i": index, "op": name, "step": step.get("step"), "ok": False, "seconds": 0, "error": error})
            status = status or (0 if step.get("continue_on_error") else 1)
            continue
        journaled = name not in READ_ONLY
        record = {"run": ctx["run"], "step": step.get("step"), "op": name, "at": now()}
        started = time.monotonic()
        interrupted = None
        try:
            if journaled:
                append_journal(ctx["component"], dict(record, phase="begin"))
            out = OPS[name](ctx, step)
            ok = True
        except TakenOver as exc:  # a check or bake stopped early for a rollback
            ok, out, interrupted = False, dict(exc.detail, error=str(exc)), exc
        except OpFailed as exc:
            ok, out = False, dict(exc.detail, error=str(exc))
        except Exception as exc:  # a bug or an OS surprise: report it as this step's failure
            ok, out = False, {"error": f"{type(exc).__name__}: {exc}"}
        seconds = round(time.monotonic() - started, 3)
        if journaled:
            try:
                append_journal(
                    ctx["component"], dict(record, phase="end", ok=ok, seconds=seconds, error=out.get("error"))
                )
            except (OSError, OpFailed) as exc:
                ok, out = False, dict(out, error=out.get("error") or f"cannot write the host journal: {exc}")
        if interrupted is not None:
            return taken_over(ctx, index, step, interrupted, "during " + where)
        emit(dict(out, i=index, op=name, step=step.get("step"), ok=ok, seconds=seconds))
        if not ok and not step.get("continue_on_error"):
            status = 1
    return status


def taken_over(ctx: Ctx, index: int, step: Spec, exc: OpFailed, when: str) -> int:
    """End the program for a rollback: journaled, and reported as the lock's failure (the controller's
    sign that the host is no longer this run's), naming the operation it stopped at."""
    req = exc.detail.get("takeover") or {}
    append_journal(
        ctx["component"], {"event": "taken-over", "run": ctx["run"], "by": req.get("run"), "when": when, "at": now()}
    )
    emit(
        {
            "i": index,
            "op": "lock",
            "step": step.get("step"),
            "ok": False,
            "seconds": 0,
            "handed_over": True,
            "error": f"{exc} {when}",
            "takeover": req,
            "stopped": step["op"],
        }
    )
    return 1


if __name__ == "__main__":  # as bootstrap.py runs the built program
    sys.exit(main())
