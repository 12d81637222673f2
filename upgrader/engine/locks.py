"""The controller-side lock: one upgrader process per component on this machine.

flock is released by the kernel when the process dies (even by SIGKILL), so a
crashed run never leaves this lock stale; host locks (on the hosts, taken by
the agent) are the ones that outlive a crash and need ``--break-lock``.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from pathlib import Path
from types import TracebackType

from upgrader.errors import RefusedError


class LocalLock:
    def __init__(self, state: Path, component: str, holder: dict[str, str]) -> None:
        self.path = state / "locks" / f"{component}.lock"
        self.holder = holder
        self._fd: int | None = None

    def __enter__(self) -> LocalLock:
        for private in (self.path.parent.parent, self.path.parent):
            private.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(private, 0o700)
        # Not through a symlink, nor a FIFO planted at the name before the directory was made private: the
        # holder record is truncated and written below, and a FIFO would hang the open (issue 25 §5).
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        except OSError as exc:  # ELOOP: a symlink; ENXIO: a FIFO without a writer
            raise RefusedError(
                f"cannot open the lock file {self.path}: {exc.strerror} (a symlink or a FIFO?)",
                "look at who put it there, then remove it",
            ) from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            os.close(fd)
            raise RefusedError(
                f"{self.path} is not a lock file of this user's ({stat.filemode(info.st_mode)}, uid {info.st_uid})",
                "look at who put it there, then remove it",
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 4096).decode(errors="replace")
            os.close(fd)
            try:
                info = json.loads(other)
                who = f"run {info.get('run')} by {info.get('operator')} (pid {info.get('pid')})"
            except json.JSONDecodeError:
                who = "another upgrader process"
            raise RefusedError(
                f"{self.path.stem} is locked on this controller by {who}",
                "wait for it to finish, or use `upgrader status` to see what it is doing",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({**self.holder, "pid": os.getpid()}).encode())
        self._fd = fd
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
