"""One program at a time per component (a flock), and how a rollback takes over from the one in flight."""

from __future__ import annotations

import json
import os
import time

from .errors import OpFailed, TakenOver
from .fs import read_json, remove_quietly, write_json_atomic
from .protocol import LOADER
from .state import append_journal, now, state_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .shapes import Ctx, Record


# Every program that changes anything holds an exclusive flock on /var/lib/upgrader/<component>/
# program.lock from its first operation to its last, so an apply and a rollback never interleave
# on a host (the host lock, lock.json, says which *run* owns the component; this says which
# *process* is acting on it now).  The kernel drops a flock when its holder dies, even by SIGKILL.
#
# A program that takes the host lock over (lock mode "handover" or "break": the emergency rollback,
# or apply --break-lock) does not queue behind the one in flight.  It writes a takeover request;
# the holder looks for one between operations and ends its program there ("taken over by ...").
# Past the takeover op's ``takeover_wait`` seconds the holder is killed instead: its pid is in the
# lock file, and it is killed (with its children) only if /proc shows it is an upgrader agent that
# holds the lock file open.  The host journal records which happened.  Any other program waits at
# most BUSY_WAIT for the lock and then fails as a lock failure (the controller's "handed over").

PROGRAM_LOCK = "program.lock"
TAKEOVER = "takeover.json"
BUSY_WAIT = 5.0  # seconds any other program waits for the program lock
TAKEOVER_POLL = 0.1  # seconds: how often a check's or bake's wait looks for a takeover request


def check_takeover(ctx: Ctx) -> None:
    lock = ctx.get("lock")
    req = lock.request() if lock is not None else None
    if req:
        raise TakenOver(
            "taken over by rollback run {} (pid {})".format(req.get("run"), req.get("pid")),
            handed_over=True,
            takeover=req,
        )


def proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat): tells a pid from a reused one."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def alive(who: Record | None) -> bool:
    who = who or {}
    pid = who.get("pid")
    return isinstance(pid, int) and pid > 0 and proc_start(pid) == who.get("start")


def is_agent_holding(pid: int, lock_fd: int) -> bool:
    """True if /proc says ``pid`` runs an upgrader agent (python, upgrader's loader or agent on its command
    line) and has the lock file open: only such a process is ever killed."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return False
    if not args or "python" not in os.path.basename(args[0]):
        return False
    if not any("upgrader" in a or a == LOADER for a in args[1:]):
        return False
    mine = os.fstat(lock_fd)
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
            return True
    return False


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_holder(pid: int) -> None:
    """SIGKILL the agent first (so it cannot run another step), then what it had started."""
    import signal

    rest = descendants(pid)
    try:
        group = os.getpgid(pid)
        os.kill(pid, signal.SIGKILL)
        if group == pid:  # its own process group (not sudo's or the login shell's): take it all
            os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it ended by itself meanwhile: its lock is free, and its children are still killed below
    for child in rest:
        try:
            if os.getpgid(child) == child:
                os.killpg(child, signal.SIGKILL)
            os.kill(child, signal.SIGKILL)
        except OSError:
            pass


class ProgramLock:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.dir = state_dir(ctx["component"])
        self.path = os.path.join(self.dir, PROGRAM_LOCK)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
        self.me = {"pid": os.getpid(), "start": proc_start(os.getpid()), "run": ctx["run"], "kind": ctx.get("kind")}

    def _try(self) -> bool:
        import fcntl

        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _wait(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not self._try():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def holder(self) -> Record:
        try:
            data = json.loads(os.pread(self.fd, 4096, 0).decode() or "null")
        except ValueError:
            data = None
        return data if isinstance(data, dict) else {}

    def _own(self) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(dict(self.me, since=now())).encode(), 0)

    def request(self) -> Record | None:
        """A live takeover request by another run, or None."""
        req = read_json(os.path.join(self.dir, TAKEOVER))
        if isinstance(req, dict) and req.get("run") != self.ctx["run"] and alive(req):
            if self.me.get("kind") == "rollback" and req.get("kind") == "rollback":
                return None  # a rollback is never cut short by another: that one waits (take_over)
            return req
        return None

    def acquire(self) -> None:
        req = self.request()
        if req:
            raise OpFailed(
                "taken over by rollback run {} (pid {})".format(req.get("run"), req.get("pid")),
                handed_over=True,
                takeover=req,
            )
        if not self._wait(BUSY_WAIT):
            held = self.holder()
            running = "another upgrader program is running for {} on this host (run {}, pid {}, since {})".format(
                self.ctx["component"],
                held.get("run"),
                held.get("pid"),
                held.get("since"),
            )
            owner = read_json(os.path.join(self.dir, "lock.json"))
            if isinstance(owner, dict) and owner.get("run") != self.ctx["run"]:  # say it as op_lock would
                running = "locked by run {} ({}, since {}): {}".format(
                    owner.get("run"),
                    owner.get("operator"),
                    owner.get("since"),
                    running,
                )
            raise OpFailed(running, holder=held, busy=True)
        self._own()

    def take_over(self, wait: float) -> Record:
        """Take the lock from whatever program holds it: wait for it to end its current op, else kill it."""
        started = time.monotonic()
        request = os.path.join(self.dir, TAKEOVER)
        write_json_atomic(request, dict(self.me, since=now()))
        try:
            held, how = None, "free"
            if not self._try():
                held = self.holder()
                how = "waited"
                if not self._wait(wait):
                    held = self.holder()
                    if held.get("kind") == "rollback" and self.me.get("kind") == "rollback":
                        # Two rollbacks at once: the first finishes; the second is refused on this host.
                        raise OpFailed(
                            "another rollback (run {}, pid {}) has been rolling back {} on this host "
                            "for over {}s; not interrupted".format(
                                held.get("run"), held.get("pid"), self.ctx["component"], wait
                            ),
                            holder=held,
                            busy=True,
                        )
                    pid = held.get("pid")
                    if not (isinstance(pid, int) and alive(held) and is_agent_holding(pid, self.fd)):
                        raise OpFailed(
                            "the program lock of {} is held by pid {}, which is not an upgrader "
                            "agent this one can verify; not killed".format(self.ctx["component"], pid),
                            holder=held,
                        )
                    kill_holder(pid)
                    how = "killed"
                    if not self._wait(10.0):
                        raise OpFailed(f"killed pid {pid}, yet the program lock is still held", holder=held)
        finally:
            if (read_json(request) or {}).get("pid") == self.me["pid"]:
                remove_quietly(request)
        self._own()
        seconds = round(time.monotonic() - started, 3)
        out = {"how": how, "seconds": seconds, "holder": held or None}
        append_journal(self.ctx["component"], {"event": "takeover", "run": self.ctx["run"], "at": now(), **out})
        return out

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = -1
