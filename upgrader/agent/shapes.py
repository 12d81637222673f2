"""The shapes of what a program carries, for the type checker only: nothing here runs on a host.

A program is JSON, so these stay plain dicts; importing typing would cost ~3 ms at every agent start."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tarfile import TarInfo
    from typing import Any, Dict, Optional, Tuple  # aliases are evaluated: 3.8's spelling (the hosts' minimum)

    Ctx = Dict[str, Any]  # one program's context: component, run, root, kind, its program lock
    Spec = Dict[str, Any]  # an operation, a service or a check, as the controller sent it
    Record = Dict[str, Any]  # what an operation returns, a journal line, a record on disk
    Parts = Tuple[str, ...]  # a path inside a release, name by name
    Member = Tuple[TarInfo, str, Parts, Optional[Parts]]  # a tarball member: (member, kind, parts, link)
