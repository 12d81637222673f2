"""How an operation fails: OpFailed carries a message and details for the controller."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class OpFailed(Exception):
    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.detail = detail


# ---------------------------------------------------------------- directories root may write in
#
# Root never writes where someone else could swap what it writes to: every directory it writes in
# (install root, releases/, config directories, /var/lib/upgrader and below) must be a real
# directory (no symlink anywhere on its path, checked with lstat from /), and it and each ancestor
# must be owned by root and not writable by group or others.  An ancestor may be world-writable only
# if sticky (/tmp, /var/tmp): others cannot rename or remove what root owns in it.  Temporary files
# get unguessable names and O_CREAT|O_EXCL|O_NOFOLLOW, so a planted file or symlink is never opened.


def insecure(path: str, why: str) -> OpFailed:
    return OpFailed(
        "refusing to write under %s: %s; fix: chown root:root %s && chmod go-w %s" % (path, why, path, path),
        insecure=path,
    )


def unsafe(message: str, member: str) -> OpFailed:
    return OpFailed("unsafe tarball: " + message, member=member)


class TakenOver(OpFailed):
    pass
