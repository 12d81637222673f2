"""Sent as ``python3 -I -S -c <this file> KEY PACKED_SOURCE PROGRAM``: load the agent and run it.

Compiling the agent costs ~16 ms of CPU on every call, on every host at once during a rollback, so
the compiled code is cached on the host under KEY (a digest of the source) and this Python's cache
tag.  The cache is only a cache: missing, unreadable or not safely owned, the source that came with
the command is compiled instead.  It is only trusted when owned by us and writable by nobody else,
since it is executed as root.  Standard library only, like the agent.
"""

import marshal
import os
import sys

CACHE = "/var/lib/upgrader/.agent"


def _private(path):
    st = os.stat(path)
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def _cached(path):
    try:
        if _private(os.path.dirname(path)) and _private(path):
            with open(path, "rb") as f:
                return marshal.loads(f.read())
    except (OSError, ValueError, EOFError, TypeError):
        pass
    return None


def _store(path, code):
    try:
        for private in (os.path.dirname(CACHE), CACHE):  # the agent's state dir is root-only too
            if not os.path.isdir(private):
                os.mkdir(private, 0o700)
        if not _private(CACHE):
            return
        tmp = "%s.%d" % (path, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(marshal.dumps(code))
        os.replace(tmp, path)
    except OSError:
        pass


def _agent_code(key, packed):
    path = "%s/%s.%s" % (CACHE, key, sys.implementation.cache_tag)
    code = _cached(path)
    if code is None:
        import base64
        import zlib

        code = compile(zlib.decompress(base64.b64decode(packed)), "upgrader-agent", "exec")
        _store(path, code)
    return code


exec(_agent_code(sys.argv[1], sys.argv[2]))
