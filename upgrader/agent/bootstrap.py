"""Loads the agent and runs it.  Two ways to be started (upgrader/agent/__init__.py):

* ``python3 -I -S -c <this file> KEY PACKED_SOURCE PROGRAM``: one program, everything on the command line;
* ``python3 -I -S -c LOADER KEY``: serving; LOADER reads this file (base64) from stdin, this file reads the
  packed source as the next line, and the programs follow, one per line.  Nothing bulky on the command
  line, which sudo logs and ps shows.

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


def _load():
    key, rest = sys.argv[1], sys.argv[2:]
    packed = rest[0] if rest else sys.stdin.readline().strip()  # read even when cached: it precedes the programs
    code = _agent_code(key, packed)
    sys.argv = ["upgrader-agent", *rest[1:2]]  # the agent's own view: the program, if it came on the command line
    return code


exec(_load())
