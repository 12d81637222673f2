"""How an operation fails: OpFailed carries a message and details for the controller."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class OpFailed(Exception):
    """An operation failed: the message is the controller's error, ``detail`` goes into the result as is."""

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.detail = detail


def insecure(path: str, why: str) -> OpFailed:
    """Root will not write under ``path`` (see fs.check_dir), and the fix that lets it."""
    return OpFailed(
        f"refusing to write under {path}: {why}; fix: chown root:root {path} && chmod go-w {path}",
        insecure=path,
    )


def unsafe(message: str, member: str) -> OpFailed:
    """A tarball refused whole for ``member`` (see unpack)."""
    return OpFailed("unsafe tarball: " + message, member=member)


class TakenOver(OpFailed):
    """The program stops here: a rollback has asked for the host (program_lock.check_takeover)."""
