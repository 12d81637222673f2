"""Running a command without the subprocess module, its output bounded (see run)."""

from __future__ import annotations

import os
import time

from .errors import OpFailed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


MAX_OUTPUT = 4000


def tail(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= MAX_OUTPUT else "..." + text[-MAX_OUTPUT:]


class Completed:
    """What ``run`` saw: exit code (negative: killed by that signal), and both outputs as text."""

    __slots__ = ("returncode", "stderr", "stdout")

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").replace("\r\n", "\n")


def run(argv: Sequence[str], timeout: float) -> Completed:
    """Run ``argv`` (no shell), stdin /dev/null, both outputs captured; OpFailed if it cannot start or
    overruns ``timeout`` (it is then killed).

    posix_spawn and poll, not the subprocess module: importing subprocess (threading, selectors,
    signal, locale...) cost ~5 ms of CPU at every agent start, on every host at once in a rollback.
    The child gets only stdin/stdout/stderr, as with subprocess's close_fds: what the agent opens is
    close-on-exec (lock files included) and anything it inherited is closed in the child, so a
    service a start command leaves running holds none of them.  Each output keeps at most
    OUTPUT_KEPT bytes (see _Kept): a command from a playbook that prints without end must not
    exhaust the memory of root's agent.
    """
    inherited = _inherited()
    if inherited is None or not hasattr(os, "posix_spawnp"):  # no /proc, or Python 3.7
        return _run_subprocess(argv, timeout)
    argv = list(argv)
    deadline = time.monotonic() + timeout
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = os.posix_spawnp(
            argv[0],
            argv,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out_w, 1),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
                *((os.POSIX_SPAWN_CLOSE, fd) for fd in inherited),
            ],
        )
    except OSError as exc:
        for fd in (out_r, out_w, err_r, err_w):
            os.close(fd)
        raise OpFailed(f"cannot run {argv[0]}: {exc}") from None
    os.close(out_w)
    os.close(err_w)
    try:
        return _collect(argv, timeout, deadline, pid, out_r, err_r)
    finally:
        os.close(out_r)
        os.close(err_r)


OUTPUT_KEPT = 1 << 20  # bytes of each output of a command that run() keeps: its first and last halves


class _Kept:
    """One output of a command as run() keeps it: its first and last OUTPUT_KEPT / 2 bytes.

    What lies between is read (the command must not block on a full pipe) and counted, not kept.
    Callers look at the start (a version, a status line) or the end (the error that made it fail).
    """

    CHUNK = 65536  # the tail is kept in pieces of about this size, however small the reads

    def __init__(self) -> None:
        from collections import deque  # loaded already (re imports it): no import cost

        self.head_max = OUTPUT_KEPT // 2
        self.tail_max = OUTPUT_KEPT - self.head_max
        self.head = bytearray()
        self.tail: deque[bytearray] = deque()  # bytearrays; the first may start before the last ``tail_max`` bytes
        self.tail_size = 0
        self.dropped = 0

    def add(self, data: bytes) -> None:
        room = self.head_max - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data:
            return
        if self.tail and len(self.tail[-1]) < self.CHUNK:
            self.tail[-1] += data
        else:
            self.tail.append(bytearray(data))
        self.tail_size += len(data)
        while self.tail_size - len(self.tail[0]) >= self.tail_max:  # whole pieces older than the last half
            self.tail_size -= len(self.tail[0])
            self.dropped += len(self.tail.popleft())

    def text(self) -> str:
        tail = b"".join(self.tail)
        over = max(0, len(tail) - self.tail_max)
        if not self.dropped and not over:
            return _text(bytes(self.head) + tail)
        return (
            f"{_text(bytes(self.head))}\n[... {self.dropped + over} bytes of output not kept ...]\n{_text(tail[over:])}"
        )


def _collect(argv: Sequence[str], timeout: float, deadline: float, pid: int, out_r: int, err_r: int) -> Completed:
    """Read both outputs of ``pid`` until it exits; kill and reap it past ``deadline``."""
    import select

    kept = {out_r: _Kept(), err_r: _Kept()}
    poller = select.poll()
    for fd in kept:
        poller.register(fd, select.POLLIN)
    reading = len(kept)
    while True:
        left = deadline - time.monotonic()
        if reading:
            ready = poller.poll(left * 1000) if left > 0 else []
            for fd, _ in ready:
                data = os.read(fd, 65536)
                if data:
                    kept[fd].add(data)
                else:
                    poller.unregister(fd)
                    reading -= 1
        else:  # both outputs closed: the child is exiting (or left a grandchild holding nothing)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(min(0.002, max(0.0, left)))
        if left <= 0:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise OpFailed("{} did not finish within {:g}s".format(" ".join(argv), timeout), timed_out=True)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return Completed(code, kept[out_r].text(), kept[err_r].text())


def _inherited() -> list[int] | None:
    """The agent's descriptors past stderr that a child would inherit (None: /proc cannot say)."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return None
    found = []
    for name in names:
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    found.append(fd)
            except OSError:  # the listing's own descriptor, closed by now
                pass
    return found


def _run_subprocess(argv: Sequence[str], timeout: float) -> Completed:
    """run() where posix_spawnp or /proc is missing: subprocess starts it (close_fds), _collect reads it."""
    import subprocess

    argv = list(argv)
    deadline = time.monotonic() + timeout
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise OpFailed(f"cannot run {argv[0]}: {exc}") from None
    out, err = proc.stdout, proc.stderr
    assert out is not None and err is not None  # both PIPE
    try:
        done = _collect(argv, timeout, deadline, proc.pid, out.fileno(), err.fileno())
    except OpFailed:
        proc.returncode = -9  # reaped by _collect: Popen must not wait for it again
        raise
    finally:
        out.close()
        err.close()
    proc.returncode = done.returncode
    return done
