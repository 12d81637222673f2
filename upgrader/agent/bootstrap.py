"""Loads the agent and runs it: the first stage, started as ``python3 -I -S -c LOADER KEY``
(upgrader/agent/__init__.py).  LOADER reads this file (base64) from stdin, this file reads the packed
source (upgrader/agent/build.py's program, compressed) as the next line, and the programs follow, one per
line.  Nothing bulky on the command line, which sudo logs and ps shows.

Compiling the agent costs ~16 ms of CPU on every call, on every host at once during a rollback, so
the compiled code is cached on the host under KEY (a digest of the source) and this Python's cache
tag.  The cache is only a cache: missing, unreadable or not safely owned, the source that came with
the command is compiled instead.  It is only trusted when KEY is the digest of the source sent in
this run, the entry records that KEY, and it and every directory above it are owned by us and
writable by nobody else, since it is executed as root.  Standard library only, like the agent.

It parses on Python 3.6 and later (annotations quoted, no future import), so a host whose python3 is
older than the agent's minimum is told so in one line rather than with the agent's SyntaxError.
"""

import marshal
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import CodeType

CACHE = "/var/lib/upgrader/.agent"
MINIMUM = (3, 8)  # the hosts' minimum Python (README); tests/unit/test_agent_build.py holds the agent to it


def _digest(packed: str) -> str:
    """The source key of ``packed`` as upgrader/agent/__init__.py computes it (builtin sha256: no hashlib import)."""
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # 3.11 and older
    except ImportError:
        try:
            from _sha2 import sha256  # type: ignore[import-not-found]  # 3.12+
        except ImportError:
            from hashlib import sha256
    digest: str = sha256(packed.encode()).hexdigest()
    return digest[:24]


def _private(path: str) -> bool:
    """``path`` and every ancestor: real directories, ours, not group/other-writable (sticky ancestors aside)."""
    names = [n for n in path.split("/") if n]
    for i in range(len(names) + 1):
        st = os.lstat("/" + "/".join(names[:i]))
        if st.st_mode & 0o170000 != 0o040000 or st.st_uid not in (0, os.getuid()):
            return False
        if st.st_mode & 0o022 and (i == len(names) or not st.st_mode & 0o1000):
            return False
    return True


def _cached(path: str, key: str) -> "CodeType | None":
    try:
        if _private(CACHE):
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                head, _, body = f.read().partition(b"\n")
                if st.st_uid == os.getuid() and not st.st_mode & 0o022 and head == key.encode():
                    code = marshal.loads(body)
                    return code if isinstance(code, type(_cached.__code__)) else None
    except (OSError, ValueError, EOFError, TypeError):
        pass
    return None


def _store(path: str, key: str, code: "CodeType") -> None:
    try:
        for private in (os.path.dirname(CACHE), CACHE):  # the agent's state dir is root-only too
            if not os.path.isdir(private):
                os.mkdir(private, 0o700)
        if not _private(CACHE):
            return
        tmp = f"{path}.{os.urandom(8).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.encode() + b"\n" + marshal.dumps(code))
        os.replace(tmp, path)
    except OSError:
        pass


def _agent_code(key: str, packed: str) -> "CodeType":
    """The agent compiled from ``packed``; from the cache only when ``key`` is the digest of ``packed``
    (the source sent in this run), so a cache entry can never stand in for different source."""
    verified = len(key) == 24 and _digest(packed) == key
    path = f"{CACHE}/{key}.{sys.implementation.cache_tag}"
    code = _cached(path, key) if verified else None
    if code is None:
        import base64
        import zlib

        code = compile(zlib.decompress(base64.b64decode(packed)), "upgrader-agent", "exec")
        if verified:
            _store(path, key, code)
    return code


def _load() -> "CodeType":
    if sys.version_info < MINIMUM:  # the controller shows the last lines of stderr: this one says what to do
        here = f"{sys.executable or 'python3'} is {sys.version.split()[0]}"
        sys.exit(
            f"upgrader agent: needs Python {MINIMUM[0]}.{MINIMUM[1]} or later, and {here}; "
            "fix: install a newer python3 on this host or name one with --python"
        )
    key = sys.argv[1]
    packed = sys.stdin.readline().strip()  # read even when cached: it precedes the programs
    code = _agent_code(key, packed)
    sys.argv = ["upgrader-agent"]
    return code


exec(_load())
