# upgrader host agent.  Standard library only: it runs on the hosts with their python3.
#
# Loaded by bootstrap.py, which leaves sys.argv as ["upgrader-agent", PROGRAM] (one base64 JSON program) or
# ["upgrader-agent"] (serving: programs arrive on stdin, one per line; see upgrader/agent/__init__.py);
# a program is {"component", "run", "root", "ops": [{"op": NAME, ...}, ...]}.  Every operation is written
# to the host journal before it runs and after it ends (fsync'd), and reported on stdout as
# one "@@upgrader {json}" line.  The first failing operation ends the program (exit 1).
#
# Start-up time matters (an emergency rollback starts this on every host at once), so modules
# only some operations need (tarfile, hashlib, shutil, socket) are imported there, and plain HTTP
# checks speak HTTP/1.0 over a socket rather than import http.client.
import base64
import json
import os
import re
import sys
import time

STATE = "/var/lib/upgrader"
MARKER = "@@upgrader "
META = ".upgrader"  # per-release metadata directory inside releases/<version>/
MAX_MEMBER_BYTES = 4 << 30
MAX_OUTPUT = 4000


class OpFailed(Exception):
    def __init__(self, message, **detail):
        super().__init__(message)
        self.detail = detail


def emit(record):
    sys.stdout.write(MARKER + json.dumps(record, sort_keys=True) + "\n")
    sys.stdout.flush()


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---------------------------------------------------------------- directories root may write in
#
# Root never writes where someone else could swap what it writes to: every directory it writes in
# (install root, releases/, config directories, /var/lib/upgrader and below) must be a real
# directory (no symlink anywhere on its path, checked with lstat from /), and it and each ancestor
# must be owned by root and not writable by group or others.  An ancestor may be world-writable only
# if sticky (/tmp, /var/tmp): others cannot rename or remove what root owns in it.  Temporary files
# get unguessable names and O_CREAT|O_EXCL|O_NOFOLLOW, so a planted file or symlink is never opened.


def insecure(path, why):
    return OpFailed(
        "refusing to write under %s: %s; fix: chown root:root %s && chmod go-w %s" % (path, why, path, path),
        insecure=path,
    )


def check_dir(path):
    """``path`` (absolute) and its ancestors are real directories owned by root and not group/other-writable."""
    import stat

    if not path.startswith("/") or "/../" in path + "/" or "/./" in path + "/":
        raise insecure(path, "not a plain absolute path")
    here = "/"
    names = [n for n in path.split("/") if n]
    for i in range(len(names) + 1):
        if i:
            here = here.rstrip("/") + "/" + names[i - 1]
        st = os.lstat(here)
        if stat.S_ISLNK(st.st_mode):
            raise insecure(here, "it is a symlink (name the real directory instead)")
        if not stat.S_ISDIR(st.st_mode):
            raise insecure(here, "it is not a directory")
        if st.st_uid not in (0, os.geteuid()):
            raise insecure(here, "it is owned by uid %d" % st.st_uid)
        last = i == len(names)
        if st.st_mode & 0o022 and (last or not st.st_mode & stat.S_ISVTX):
            raise insecure(here, "it is writable by group or others (mode %o)" % (st.st_mode & 0o7777))
    return path


def secure_dir(path, mode=0o755):
    """Make ``path`` (and missing parents, with ``mode``) if needed, then check_dir it."""
    missing = []
    probe = path
    while probe != "/" and not os.path.lexists(probe):
        missing.append(probe)
        probe = os.path.dirname(probe)
    check_dir(probe)
    for new in reversed(missing):
        try:
            os.mkdir(new, mode)
        except FileExistsError:
            pass
    return check_dir(path)


def state_dir(component):
    """/var/lib/upgrader/<component>: the program lock, host lock, journal and staged registry; root only."""
    secure_dir(STATE, 0o700)
    return secure_dir(os.path.join(STATE, component), 0o700)


def install_dirs(root):
    """The install root and releases/, checked (and made) before any operation writes under them."""
    secure_dir(root)
    return secure_dir(releases_dir(root))


def token():
    return os.urandom(8).hex()


def create_private(path, mode=0o600):
    """A new file at ``path``: never an existing one, never through a symlink."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)


def copy_file(src, dst):
    """Copy ``src`` (a regular file, not a symlink) to a new ``dst``, keeping mode and (as root) owner."""
    import shutil
    import stat

    fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO is refused below, not waited on
    try:
        st = os.fstat(fin)
        if not stat.S_ISREG(st.st_mode):
            raise OpFailed("%s is not a regular file" % src, path=src)
        fout = create_private(dst)
        try:
            with os.fdopen(os.dup(fin), "rb") as reader, os.fdopen(fout, "wb") as writer:
                shutil.copyfileobj(reader, writer, 1 << 20)
                writer.flush()
                os.fchown(writer.fileno(), st.st_uid, st.st_gid)
                os.fchmod(writer.fileno(), stat.S_IMODE(st.st_mode))
                os.fsync(writer.fileno())
        except BaseException:
            remove_quietly(dst)
            raise
    finally:
        os.close(fin)


def append_journal(component, record):
    path = os.path.join(state_dir(component), "journal.jsonl")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path, data, mode=0o600):
    tmp = "%s.tmp-%s" % (path, token())
    fd = create_private(tmp, mode)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    fsync_dir(os.path.dirname(path))


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path, default=None):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


def tail(text):
    text = text or ""
    return text if len(text) <= MAX_OUTPUT else "..." + text[-MAX_OUTPUT:]


class Completed:
    """What ``run`` saw: exit code (negative: killed by that signal), and both outputs as text."""

    __slots__ = ("returncode", "stderr", "stdout")

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _text(data):
    return data.decode("utf-8", "replace").replace("\r\n", "\n")


def run(argv, timeout):
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
        raise OpFailed("cannot run %s: %s" % (argv[0], exc)) from None
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

    def __init__(self):
        from collections import deque  # loaded already (re imports it): no import cost

        self.head_max = OUTPUT_KEPT // 2
        self.tail_max = OUTPUT_KEPT - self.head_max
        self.head = bytearray()
        self.tail = deque()  # bytearrays; the first may start before the last ``tail_max`` bytes
        self.tail_size = 0
        self.dropped = 0

    def add(self, data):
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

    def text(self):
        tail = b"".join(self.tail)
        over = max(0, len(tail) - self.tail_max)
        if not self.dropped and not over:
            return _text(bytes(self.head) + tail)
        return "%s\n[... %d bytes of output not kept ...]\n%s" % (
            _text(bytes(self.head)),
            self.dropped + over,
            _text(tail[over:]),
        )


def _collect(argv, timeout, deadline, pid, out_r, err_r):
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
            raise OpFailed("%s did not finish within %gs" % (" ".join(argv), timeout), timed_out=True)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return Completed(code, kept[out_r].text(), kept[err_r].text())


def _inherited():
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


def _run_subprocess(argv, timeout):
    """run() where posix_spawnp or /proc is missing: subprocess starts it (close_fds), _collect reads it."""
    import subprocess

    argv = list(argv)
    deadline = time.monotonic() + timeout
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise OpFailed("cannot run %s: %s" % (argv[0], exc)) from None
    try:
        done = _collect(argv, timeout, deadline, proc.pid, proc.stdout.fileno(), proc.stderr.fileno())
    except OpFailed:
        proc.returncode = -9  # reaped by _collect: Popen must not wait for it again
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
    proc.returncode = done.returncode
    return done


# ---------------------------------------------------------------- releases and links


def releases_dir(root):
    return os.path.join(root, "releases")


def release_path(root, version):
    """releases/<version>, for a version that is one plain directory name."""
    if (
        not isinstance(version, str)
        or version in ("", ".", "..")
        or "/" in version
        or "\0" in version
        or version.startswith(".")
    ):
        raise OpFailed("%r cannot be a release directory name" % (version,), version=version)
    return os.path.join(releases_dir(root), version)


def current_version(root):
    try:
        target = os.readlink(os.path.join(root, "current"))
    except OSError:
        return None
    return os.path.basename(target.rstrip("/"))


def staged_versions(root):
    try:
        names = os.listdir(releases_dir(root))
    except OSError:
        return []
    return sorted(n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(releases_dir(root), n)))


def release_meta(root, version, name, default=None):
    try:
        where = release_path(root, version)
    except OpFailed:  # a name read from a link or a record that cannot be a release: nothing recorded there
        return default
    return read_json(os.path.join(where, META, name), default)


def meta_dir(root, version):
    """releases/<version>/.upgrader/, made 0700 if missing and checked like every directory root writes in."""
    return secure_dir(os.path.join(release_path(root, version), META), 0o700)


def set_release_meta(root, version, name, data):
    write_json_atomic(os.path.join(meta_dir(root, version), name), data)


def flip(root, version):
    """Point current at releases/<version> with one rename: never a moment without a link."""
    if not os.path.isdir(release_path(root, version)):
        raise OpFailed("release %s is not staged under %s" % (version, releases_dir(root)), missing=version)
    install_dirs(root)
    tmp = os.path.join(root, ".current.tmp-" + token())
    os.symlink(os.path.join("releases", version), tmp)  # symlink() never follows or replaces what is there
    os.replace(tmp, os.path.join(root, "current"))
    fsync_dir(root)


# ---------------------------------------------------------------- service


def service_state(svc):
    if svc.get("systemd"):
        proc = run(["systemctl", "is-active", svc["systemd"]], 10)
        return proc.stdout.strip() or "unknown"
    proc = run(svc["status"], svc.get("start_timeout", 30))
    return "active" if proc.returncode == 0 else "inactive"


def service_stop(svc):
    """Stop within stop_timeout; a systemd unit that hangs on stop is then killed, and we say so."""
    timeout = svc.get("stop_timeout", 30)
    argv = ["systemctl", "stop", svc["systemd"]] if svc.get("systemd") else svc["stop"]
    try:
        proc = run(argv, timeout)
    except OpFailed:
        if not svc.get("systemd"):
            raise
        unit = svc["systemd"]
        run(["systemctl", "kill", "--signal=SIGKILL", unit], 10)
        proc = run(["systemctl", "stop", unit], 10)
        if proc.returncode == 0 and service_state(svc) != "active":
            return "killed after %gs" % timeout
        raise OpFailed("%s did not stop within %gs, even after SIGKILL" % (unit, timeout)) from None
    if proc.returncode != 0:
        raise OpFailed("stop failed: %s" % tail(proc.stderr or proc.stdout).strip(), exit_code=proc.returncode)
    return "stopped"


def service_start(svc):
    timeout = svc.get("start_timeout", 30)
    argv = ["systemctl", "start", svc["systemd"]] if svc.get("systemd") else svc["start"]
    proc = run(argv, timeout)
    if proc.returncode != 0 and svc.get("systemd"):
        # A unit that crashed repeatedly (a bad release) can hit systemd's start rate limit; clearing
        # it only when a start fails saves a systemctl call on every healthy start.
        run(["systemctl", "reset-failed", svc["systemd"]], 10)
        proc = run(argv, timeout)
    if proc.returncode != 0:
        raise OpFailed("start failed: %s" % tail(proc.stderr or proc.stdout).strip(), exit_code=proc.returncode)


# ---------------------------------------------------------------- checks


def http_get(url, timeout):
    """GET ``url``: (status, body).  Plain http:// is spoken over a socket: importing http.client (and
    the email package behind it) costs ~35 ms of CPU, paid on every host at once in a rollback."""
    if not url.startswith("http://"):
        return https_get(url, timeout)
    import socket

    hostport, _, path = url[len("http://") :].partition("/")
    hostport, path = hostport or "localhost", "/" + path
    if hostport.startswith("["):  # [IPv6]:port
        host, _, port = hostport[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = hostport.partition(":")
    deadline = time.monotonic() + timeout
    request = "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: upgrader-agent\r\nConnection: close\r\n\r\n" % (
        path,
        hostport,
    )
    chunks, size = [], 0
    with socket.create_connection((host, int(port or 80)), timeout=timeout) as sock:
        sock.sendall(request.encode("latin-1"))
        while size < HTTP_LIMIT:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return parse_http_response(b"".join(chunks))


HTTP_LIMIT = 1 << 20  # bytes of response read at most; checks look at status and a short body


def parse_http_response(raw):
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(None, 2)
    if not sep or len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise OpFailed("not an HTTP response: %r" % raw[:80])
    headers = dict((k.strip().lower(), v.strip()) for k, _, v in (h.partition(":") for h in lines[1:]))
    if headers.get("transfer-encoding", "").lower() == "chunked":  # an HTTP/1.1 server ignoring our 1.0
        body = dechunk(body)
    elif headers.get("content-length", "").isdigit():
        body = body[: int(headers["content-length"])]
    return int(parts[1]), body[:65536].decode("utf-8", "replace")


def dechunk(data):
    out = []
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            break
        out.append(data[:size])
        data = data[size + 2 :]
    return b"".join(out)


def https_get(url, timeout):
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", (parts.path or "/") + ("?" + parts.query if parts.query else ""))
        resp = conn.getresponse()
        return resp.status, resp.read(65536).decode("utf-8", "replace")
    except http.client.HTTPException as exc:
        raise OpFailed("%s: %s" % (type(exc).__name__, exc)) from None
    finally:
        conn.close()


def reported_version(check, timeout):
    """The version the component reports: with a ``pattern``, what it finds in the output or body (its
    first group, else the whole match; None if it finds nothing), else the JSON field or the stripped text."""
    if check.get("url"):
        _status, text = http_get(check["url"], timeout)
    else:
        text = run(check["argv"], timeout).stdout
    if check.get("pattern"):
        return extract_version(check["pattern"], text)
    if check.get("url"):
        try:
            return str(json.loads(text)[check.get("field", "version")])
        except (ValueError, KeyError, TypeError):
            return text.strip()
    return text.strip()


def extract_version(pattern, text):
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        return None
    if match.re.groups and match.group(1) is not None:
        return match.group(1)
    return match.group(0)


# Checks are run as root but look at what others control: the service user owns its log file and can
# put a FIFO or a symlink there; any local user can run a process whose command line holds the match
# string.  So (issue 25 §4): every check is bounded from this side by its timeout (bounded), whatever
# a file, a mount or a peer does; files are opened without following a final symlink and without
# waiting (O_NOFOLLOW|O_NONBLOCK), and only a regular file is read, at most LOG_READ bytes; a process
# counts only if it is in the service's own control group (its systemd unit) and, when the check
# names one, runs as the configured user.
CHECK_GRACE = 1.0  # seconds past a check's timeout before it is abandoned (its own timeouts fire first)
COMMAND_GRACE = 5.0  # a command check's run() kills and reaps at its timeout; this is only the backstop
LOG_READ = 8 << 20  # bytes of a log read at most, from the offset remembered at the restart


def check_once(check, ctx, service=None):
    """Return None when the check passes, else a short reason.  Never takes much longer than the
    check's timeout, whatever it meets (see bounded)."""
    timeout = check.get("timeout", 5)
    grace = COMMAND_GRACE if check["kind"] == "command" else CHECK_GRACE
    return bounded(lambda: probe(check, ctx, timeout, service), timeout + grace)


def bounded(fn, seconds):
    """``fn()``, or a reason if it has not returned within ``seconds``: it is then left running in a
    daemon thread (a read of a hung mount cannot be interrupted) and the check fails."""
    import threading

    box = []

    def target():
        try:
            box.append((True, fn()))
        except BaseException as exc:  # handed to the caller's thread below
            box.append((False, exc))

    worker = threading.Thread(target=target, name="upgrader-check", daemon=True)
    worker.start()
    worker.join(seconds)
    if not box:
        return "did not finish within %gs (a file, mount or peer that does not answer?)" % seconds
    ok, value = box[0]
    if not ok:
        raise value
    return value


def probe(check, ctx, timeout, service=None):
    """One attempt of ``check``: None when it passes, else a short reason."""
    import socket

    kind = check["kind"]
    spec = check[kind]
    try:
        if kind == "command":
            proc = run(spec["argv"], timeout)
            if proc.returncode != spec.get("exit_code", 0):
                return "exit %d: %s" % (proc.returncode, tail(proc.stderr or proc.stdout).strip()[-300:])
            if spec.get("stdout") and not re.search(spec["stdout"], proc.stdout):
                return "output does not match %r" % spec["stdout"]
        elif kind == "tcp":
            host = spec.get("host", "127.0.0.1")
            socket.create_connection((host, spec["port"]), timeout=timeout).close()
            return served_by_service(host, spec["port"], ctx, service)
        elif kind == "http":
            status, body = http_get(spec["url"], timeout)
            if status != spec.get("status", 200):
                return "HTTP %d (expected %d): %s" % (status, spec.get("status", 200), body[:200])
            if spec.get("body") and not re.search(spec["body"], body):
                return "body does not match %r: %s" % (spec["body"], body[:200])
            return served_by_service(*url_host_port(spec["url"]), ctx, service)
        elif kind == "process":
            cgroup, uid, where = process_scope(spec, ctx, service)
            if not find_process(spec["match"], cgroup, uid):
                return "no process matches %r %s" % (spec["match"], where)
        elif kind == "log":
            offset = (read_json(os.path.join(state_dir(ctx["component"]), "start.json"), {}) or {}).get(spec["path"], 0)
            if not log_matches(spec["path"], offset, spec["pattern"]):
                return "no line matching %r in %s since the restart" % (spec["pattern"], spec["path"])
        elif kind == "version":
            expected = ctx.get("expect_version")
            got = reported_version(spec, timeout)
            if got is None:  # compared as reported: never a normalised form of either side
                return "no version found: pattern %r does not match the output" % spec["pattern"]
            if expected is not None and got != expected:
                return "reports version %r, expected %r" % (got, expected)
            if spec.get("url"):
                return served_by_service(*url_host_port(spec["url"]), ctx, service)
    except (OSError, ValueError) as exc:
        return "%s: %s" % (type(exc).__name__, exc)
    except OpFailed as exc:
        return str(exc)
    return None


def process_scope(spec, ctx, service=None):
    """(control group, uid, words for a failure) a process check counts processes in.

    The unit is the one the plan names with the check, else the service being checked; its control
    group is asked of systemd (``ControlGroup``) and remembered for the operation (a unit keeps its
    group across restarts).  ``user``, if the check gives one, narrows further.  Without a unit or a
    user nothing counts: any local user could run a process whose command line matches."""
    unit = spec.get("unit") or (service or {}).get("systemd")
    user = spec.get("user")
    cgroup = uid = None
    words = []
    if unit:
        cgroup = unit_cgroup(unit, ctx)
        words.append("in %s's control group %s" % (unit, cgroup))
    if user:
        import pwd

        try:
            uid = pwd.getpwnam(user).pw_uid
        except KeyError:
            raise OpFailed("process check: no user %r on this host" % user) from None
        words.append("running as %s (uid %d)" % (user, uid))
    if cgroup is None and uid is None:
        raise OpFailed(
            "a process check needs the service's systemd unit or process.user: any local user "
            "can run a process whose command line matches"
        )
    return cgroup, uid, " and ".join(words)


def unit_cgroup(unit, ctx):
    """The control group systemd runs ``unit`` in (``ControlGroup``), remembered for the operation: a unit
    keeps its group across restarts.  OpFailed when it has none: it is not running."""
    known = ctx.setdefault("cgroups", {})
    cgroup = known.get(unit)
    if cgroup is None:
        proc = run(["systemctl", "show", "-p", "ControlGroup", unit], 10)
        cgroup = proc.stdout.strip().partition("=")[2].strip()
        if proc.returncode != 0 or not cgroup.startswith("/"):
            raise OpFailed("%s has no control group: it is not running" % unit)
        known[unit] = cgroup
    return cgroup


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def url_host_port(url):
    """(host, port) of an http:// or https:// URL (the agent's own parsing: no urllib import)."""
    scheme, _, rest = url.partition("://")
    hostport = rest.split("/", 1)[0].rpartition("@")[2]
    if hostport.startswith("["):
        host, _, port = hostport[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = hostport.partition(":")
    return host or "localhost", int(port) if port.isdigit() else (443 if scheme == "https" else 80)


def served_by_service(host, port, ctx, service):
    """None if ``port`` on this machine is listened on by a process of the service's systemd unit, or the
    check is not about this machine or no unit is known (prechecks; a service without systemd); else why
    not.  While the service is down any local user can bind its port (above 1024) and answer a tcp, http
    or version check: the answer counts only if the listening socket is held inside the unit."""
    unit = (service or {}).get("systemd")
    if not unit or not on_this_machine(host):
        return None
    inodes = listening_inodes(port)
    if not inodes:
        return None  # nothing this agent can see listens (another network namespace): as before
    cgroup = unit_cgroup(unit, ctx)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if not in_cgroup(pid, cgroup):
                continue
            for fd in os.listdir("/proc/%s/fd" % pid):
                if os.readlink("/proc/%s/fd/%s" % (pid, fd)) in inodes:
                    return None
        except OSError:  # it ended while we looked
            continue
    return "port %d is not served by %s: a process outside its control group %s listens there" % (port, unit, cgroup)


def on_this_machine(host):
    """Does ``host`` name this machine?  Not only the loopback names: 0.0.0.0, the host's own address or
    name, ``localhost.`` or ``::ffff:127.0.0.1`` reach the same listeners.  An address is this machine's
    if a socket can be bound to it here (the kernel's own answer, no list of interfaces to keep)."""
    import socket

    if host in LOOPBACK_NAMES or host.startswith("127."):
        return True
    try:
        found = socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    for family, kind, proto, _name, address in found:
        sock = socket.socket(family, kind, proto)
        try:
            sock.bind((address[0], 0, *address[2:]))
            return True
        except OSError:
            continue
        finally:
            sock.close()
    return False


def listening_inodes(port):
    """``socket:[INODE]`` of every TCP socket listening on ``port`` (IPv4 and IPv6), from /proc/net."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh, None)
                for line in fh:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:
                        found.add("socket:[%s]" % fields[9])
        except (OSError, ValueError):
            continue
    return found


def find_process(pattern, cgroup=None, uid=None):
    """Is a process whose command line matches ``pattern`` running in ``cgroup`` (a control group path,
    or one below it) as real uid ``uid``?  None for either means no condition on it."""
    rx = re.compile(pattern)
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            if not cmdline or "upgrader-agent" in cmdline or not rx.search(cmdline):
                continue
            if uid is not None and proc_uid(pid) != uid:
                continue
            if cgroup is not None and not in_cgroup(pid, cgroup):
                continue
        except OSError:  # it ended while we looked
            continue
        return True
    return False


def proc_uid(pid):
    """The real uid of process ``pid`` (/proc/PID/status), which setuid does not change."""
    with open("/proc/%s/status" % pid) as fh:
        for line in fh:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


def in_cgroup(pid, cgroup):
    """Is ``pid`` in ``cgroup`` or below it, in any hierarchy (cgroup v2 "0::/path", v1 "N:name=systemd:/path")?"""
    with open("/proc/%s/cgroup" % pid) as fh:
        for line in fh:
            path = line.rstrip("\n").split(":", 2)[-1]
            if path == cgroup or path.startswith(cgroup.rstrip("/") + "/"):
                return True
    return False


def log_matches(path, offset, pattern):
    """Does a line written since ``offset`` match?  The file is the service user's to replace: it is
    opened without following a final symlink and without waiting (a FIFO would block open() for ever),
    and only a regular file is read, at most LOG_READ bytes."""
    import errno
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OpFailed("log %s is a symlink: name the file itself" % path) from None
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OpFailed("log %s is not a regular file" % path)
        start = offset if 0 <= offset <= st.st_size else 0  # rotated or truncated: read it all
        data = os.pread(fd, LOG_READ, start)
    finally:
        os.close(fd)
    return re.search(pattern, data.decode("utf-8", "replace"), re.MULTILINE) is not None


FAST_POLL = 0.05  # seconds: cheap probes are polled this often within a check's window
# How often a failing check also asks whether the service died.  systemctl is a process of its own,
# ~10 ms of CPU each: asked on every 50 ms poll on many hosts sharing cores, it slowed the very
# start-up being waited for.
SERVICE_POLL = 1.0


def pause(ctx, seconds):
    """Sleep, but end the operation as soon as a rollback asks for the host: checks and bakes only
    watch, so they can stop anywhere (a rollback must not wait out a canary's bake)."""
    deadline = time.monotonic() + seconds
    while True:
        check_takeover(ctx)
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, TAKEOVER_POLL))


def run_checks(checks, ctx, retries=True, service=None):
    """Run every check; each may take ``retries`` x ``interval`` to pass.  Return (ok, results).

    Cheap probes (http, tcp, process, log, version) are polled every FAST_POLL within that
    window, so a service that comes up in 300 ms is seen at 300 ms, not at the next interval.
    A service that has died (failed, inactive) fails the check within SERVICE_POLL: waiting cannot help.
    """
    results = []
    ok = True
    for check in checks:
        interval = check.get("interval", 1)
        window = (check.get("retries", 0) if retries else 0) * interval
        poll = interval if check["kind"] == "command" else min(interval, FAST_POLL)
        deadline = time.monotonic() + window
        attempt = 0
        next_service_poll = time.monotonic() + SERVICE_POLL
        while True:
            attempt += 1
            reason = check_once(check, ctx, service)
            if reason is None:
                break
            left = deadline - time.monotonic()
            if service is not None and (left <= 0 or time.monotonic() >= next_service_poll):
                next_service_poll = time.monotonic() + SERVICE_POLL
                state = service_state(service)
                if state not in ("active", "activating", "reloading"):
                    reason = "service is %s (%s)" % (state, reason)
                    break
            if left <= 0:
                break
            pause(ctx, min(poll, left))
        results.append({"check": check["name"], "ok": reason is None, "reason": reason, "attempts": attempt})
        if reason is not None:
            ok = False
            break
    return ok, results


# ---------------------------------------------------------------- operations


def op_facts(ctx, s):
    root = ctx["root"]
    if not root:  # the controller has no layout: the host's own record says where the component lives
        return {
            "installed": None,
            "staged": [],
            "staged_sha": {},
            "previous": None,
            "no_record": True,
            # installed or staged by upgrader, root not recorded (an older agent's); a journal or a lock
            # alone (a rollback that found nothing to do, an unlock) is no sign of an install
            "records": any(
                os.path.exists(os.path.join(STATE, ctx["component"], name))
                for name in ("staged.json", "definitions.json", "verified.json")
            ),
            "lock": read_json(os.path.join(STATE, ctx["component"], "lock.json")),
            "clock": time.time(),
            "journal_tail": journal_tail(ctx["component"], s.get("journal_lines", 0)),
        }
    installed = current_version(root)
    out = {
        "root": root,
        "clock": time.time(),  # this host's clock: a rollback undoes what is switched here after it looked
        "installed_by": installed_by(root, installed) if installed else None,
        "run_start": run_start(root, installed) if installed else None,
        "verified": verified_record(root, ctx["component"], installed),
        "installed": installed,
        "staged": staged_versions(root),  # every release on disk; staged_sha: those this agent staged, and from what
        "staged_sha": {v: (staged_entry(root, ctx["component"], v) or {}).get("sha256") for v in staged_versions(root)},
        "previous": release_meta(root, installed, "previous.json", {}).get("version") if installed else None,
        "lock": read_json(os.path.join(STATE, ctx["component"], "lock.json")),
        "free_disk_mb": free_mb(root),
        "journal_tail": journal_tail(ctx["component"], s.get("journal_lines", 0)),
    }
    try:  # the controller left {release} and {version} for the current release
        svc, version_check = (
            with_release(s.get("service"), root, installed),
            with_release(s.get("version_check"), root, installed),
        )
    except OpFailed:  # nothing installed: no release to name, so no command of one to ask
        svc = version_check = None
    out["service"] = service_state(svc) if svc else None
    also = s.get("also")
    if isinstance(also, list):  # [[component, root]]: other components' current releases (their `requires`)
        out["also"] = dict(
            (c, current_version(r or recorded_root(c) or "/nonexistent"))
            for c, r in (e for e in also if isinstance(e, list) and len(e) == 2)
            if isinstance(c, str) and isinstance(r, str)
        )
    if version_check and out["service"] == "active":
        try:
            out["reported_version"] = reported_version(version_check, 3)
        except (OSError, ValueError, OpFailed) as exc:
            out["reported_version"] = None
            out["report_error"] = str(exc)
    return out


def free_mb(root):
    probe = root
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    st = os.statvfs(probe or "/")
    return st.f_bavail * st.f_frsize // (1 << 20)


def journal_tail(component, lines):
    if not lines:
        return []
    try:
        with open(os.path.join(STATE, component, "journal.jsonl")) as fh:
            data = fh.readlines()[-lines:]
    except OSError:
        return []
    out = []
    for line in data:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def lock_path(ctx):
    return os.path.join(state_dir(ctx["component"]), "lock.json")


def op_lock(ctx, s):
    path = lock_path(ctx)
    mode = s["mode"]
    mine = {
        "run": ctx["run"],
        "operator": s.get("operator"),
        "plan": s.get("plan"),
        "since": now(),
        "kind": s.get("kind", "apply"),
        "pid_host": s.get("controller"),
    }
    held = read_json(path)
    if mode == "acquire":
        if held and held.get("run") != ctx["run"]:
            raise OpFailed(
                "locked by run %s (%s, since %s)" % (held.get("run"), held.get("operator"), held.get("since")),
                holder=held,
            )
        if held:
            return {"lock": held, "reacquired": True}
        tmp = "%s.new-%s" % (path, token())
        write_json_atomic(tmp, mine)
        try:
            os.link(tmp, path)  # atomic create-if-absent: two operators cannot both win
        except FileExistsError:
            held = read_json(path) or {}
            raise OpFailed(
                "locked by run %s (%s, since %s)" % (held.get("run"), held.get("operator"), held.get("since")),
                holder=held,
            ) from None
        finally:
            os.unlink(tmp)
        fsync_dir(os.path.dirname(path))
        return {"lock": mine}
    if mode == "check":
        if not held or held.get("run") != ctx["run"]:
            raise OpFailed(
                "this run no longer holds the lock: %s"
                % (
                    "taken over by %s run %s (%s)" % (held.get("kind"), held.get("run"), held.get("operator"))
                    if held
                    else "lock is gone"
                ),
                holder=held,
                handed_over=bool(held),
            )
        return {"lock": held}
    if mode in ("handover", "break"):
        mine["previous_holder"] = held
        mine["reason"] = s.get("reason")
        write_json_atomic(path, mine)
        return {"lock": mine, "previous_holder": held, "takeover": ctx.get("takeover")}
    if mode == "unlock":  # `upgrader unlock`: an operator frees the host lock, whoever holds it
        if held:
            os.unlink(path)
            fsync_dir(os.path.dirname(path))
        return {"released": bool(held), "holder": held}
    if mode == "release":
        if held and held.get("run") == ctx["run"]:
            os.unlink(path)
            fsync_dir(os.path.dirname(path))
            return {"released": True}
        return {"released": False, "holder": held}
    raise OpFailed("unknown lock mode %r" % mode)


# ---------------------------------------------------------------- staging and the staged registry
#
# Which releases this agent staged, and from which artifact, is kept in a root-only registry
# (/var/lib/upgrader/<component>/staged.json), not in the release directory: a marker inside
# releases/<v>/ sits next to files that came from a tarball, and anything that could write there
# could copy a genuine marker beside other files (an HMAC over (version, sha256) could be replayed
# the same way, and would need a key to keep).  Each entry also records the directory's (device,
# inode), so a directory swapped in at that name afterwards does not count either.


def staged_path(component):
    return os.path.join(state_dir(component), "staged.json")


def staged_registry(component):
    """{version: {"sha256", "run", "staged_at", "dev", "ino"}} as this agent recorded them; {} if none."""
    here = os.path.join(STATE, component)
    if not os.path.isdir(here):
        return {}
    data = read_json(os.path.join(check_dir(here), "staged.json"), {})
    return data if isinstance(data, dict) else {}


def staged_entry(root, component, version):
    """The registry entry for ``version`` if it still describes the directory at releases/<version>."""
    import stat

    entry = staged_registry(component).get(version)
    if not isinstance(entry, dict):
        return None
    try:
        st = os.lstat(release_path(root, version))
    except (OSError, OpFailed):
        return None
    if not stat.S_ISDIR(st.st_mode) or [st.st_dev, st.st_ino] != [entry.get("dev"), entry.get("ino")]:
        return None
    return entry


def record_staged(component, version, entry):
    registry = staged_registry(component)
    if entry is None:
        registry.pop(version, None)
    else:
        registry[version] = entry
    write_json_atomic(staged_path(component), registry)


# ---------------------------------------------------------------- what a release was installed with
#
# When a release passes its verify after being switched to, the agent records the service and
# checks it was verified with (definitions.json, next to the staged registry, root only), bound to
# the release directory's (device, inode).  An emergency rollback back to that release uses them
# instead of whatever playbook the controller has at hand (a newer release's checks may not fit).
# Root runs the commands in a definition, so one is trusted only as this agent writes it: a regular
# file (never through a symlink), owned by root, one link, mode 0600, in a checked root-only
# directory, whose entry's digest matches and whose release directory is still the one recorded.

MAX_DEFINITIONS_BYTES = 4 << 20


def definitions_path(component):
    return os.path.join(state_dir(component), "definitions.json")


def read_private_json(path):
    """JSON only this agent can have written (see above); None for anything else, never an error."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_uid != os.geteuid()
            or st.st_mode & 0o077
            or st.st_nlink != 1
            or st.st_size > MAX_DEFINITIONS_BYTES
        ):
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            return json.loads(fh.read(MAX_DEFINITIONS_BYTES + 1).decode("utf-8"))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def definition_digest(service, checks):
    import hashlib

    return hashlib.sha256(json.dumps([service, checks], sort_keys=True).encode()).hexdigest()


def record_definition(ctx, version, service, checks):
    """After a verified install of ``version``: what it was verified with.  Best effort, never fails verify."""
    try:
        path = definitions_path(ctx["component"])  # the state directory, made and checked
        st = os.lstat(release_path(ctx["root"], version))
        data = read_private_json(path)
        data = data if isinstance(data, dict) else {}  # anything else is not ours: start afresh
        releases = set(staged_versions(ctx["root"]))
        data = dict((v, e) for v, e in data.items() if v in releases)  # pruned releases leave no record behind
        data[version] = {
            "service": service,
            "checks": checks,
            "run": ctx["run"],
            "at": now(),
            "dev": st.st_dev,
            "ino": st.st_ino,
            "sha256": definition_digest(service, checks),
        }
        write_json_atomic(path, data)
        return True
    except (OSError, OpFailed, TypeError, ValueError):
        return False


def recorded_definition(root, component, version):
    """The definition recorded for ``version`` if this agent wrote it and it still describes that release."""
    import stat

    try:
        here = check_dir(os.path.join(STATE, component))
        st = os.lstat(release_path(root, version))
    except (OSError, OpFailed):
        return None
    data = read_private_json(os.path.join(here, "definitions.json"))
    entry = data.get(version) if isinstance(data, dict) else None
    if (
        not isinstance(entry, dict)
        or not stat.S_ISDIR(st.st_mode)
        or [st.st_dev, st.st_ino] != [entry.get("dev"), entry.get("ino")]
    ):
        return None
    service, checks = entry.get("service"), entry.get("checks")
    if (
        not isinstance(service, dict)
        or not isinstance(checks, list)
        or not all(isinstance(c, dict) and isinstance(c.get("kind"), str) for c in checks)
        or entry.get("sha256") != definition_digest(service, checks)
    ):
        return None
    return entry


def op_stage(ctx, s):
    import shutil

    root, version, want = ctx["root"], s["version"], s["sha256"]
    target = release_path(root, version)
    install_dirs(root)
    entry = staged_entry(root, ctx["component"], version)
    if entry and entry.get("sha256") == want:
        remove_quietly(s.get("upload"))
        return {"skipped": True, "reason": "already staged and verified"}
    if os.path.lexists(target):
        if current_version(root) == version:
            raise OpFailed(
                "release %s is live but this agent did not stage it from this artifact; "
                "refusing to replace it" % version
            )
        record_staged(ctx["component"], version, None)
        shutil.rmtree(target)  # a half-staged, planted or different build of this version: stage it again
    incoming = secure_dir(os.path.join(state_dir(ctx["component"]), "incoming"), 0o700)
    private = os.path.join(incoming, "%s.tar.gz" % token())
    try:
        digest = copy_hashing(s["upload"], private)  # hash what we will extract, as root, not the user's file
        remove_quietly(s.get("upload"))
        if digest != want:
            raise OpFailed(
                "sha256 mismatch for %s: artifact has %s, playbook says %s" % (version, digest, want), sha256=digest
            )
        tmp = os.path.join(releases_dir(root), ".staging-" + token())  # unguessable; prune removes strays
        try:
            extract_safely(private, tmp, s.get("strip_components", 0))
            os.mkdir(os.path.join(tmp, META), 0o700)  # the tarball cannot have made it: extract_safely refuses that
            os.rename(tmp, target)
            fsync_dir(releases_dir(root))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        st = os.lstat(target)
        record_staged(
            ctx["component"],
            version,
            {"sha256": want, "run": ctx["run"], "staged_at": now(), "dev": st.st_dev, "ino": st.st_ino},
        )
    except OSError as exc:
        raise OpFailed("cannot unpack %s: %s" % (version, exc), errno=exc.errno) from None
    finally:
        remove_quietly(private)
    return {"staged": version}


def remove_quietly(path):
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


def copy_hashing(src, dst):
    """Copy the uploaded artifact (the SSH user's file: a regular file, never followed as a symlink)."""
    import hashlib
    import stat

    digest = hashlib.sha256()
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # NONBLOCK: a planted FIFO cannot hang us
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OpFailed("uploaded artifact %s is not a regular file" % src, path=src)
        with os.fdopen(fd, "rb") as fin, os.fdopen(create_private(dst), "wb") as fout:
            for block in iter(lambda: fin.read(1 << 20), b""):
                digest.update(block)
                fout.write(block)
    except OSError as exc:
        remove_quietly(dst)
        raise OpFailed("cannot read uploaded artifact %s: %s" % (src, exc), errno=exc.errno) from None
    return digest.hexdigest()


# ---------------------------------------------------------------- unpacking a release
#
# Root unpacks a vendor's tarball on every host, so nothing in it may act outside releases/<version>/.
# The whole archive is read and judged first (validate_members); only an archive with no bad member
# is written, and then only through directory file descriptors opened with O_NOFOLLOW, so even a
# rule missed here cannot make a write follow a symlink.  The rules, stricter than tarfile's "data"
# filter (which is also applied where this Python has it):
#   * names: relative, no "..", no .upgrader (the engine's metadata) at any depth or in any case;
#   * kinds: regular files, directories, symlinks, hardlinks; never devices, FIFOs or anything else;
#   * nothing beneath a symlink or a file member (so no write can pass through a link the archive
#     made: a -> ., a/b -> .., c -> a/b/..), and no name twice (a later member would replace one);
#   * symlinks: resolved through the archive's own links, they must stay inside the release and out
#     of .upgrader/ (absolute targets are refused);
#   * hardlinks: only to a regular file an earlier member of this archive made;
#   * modes: rwxr-xr-x at most (no setuid/setgid/sticky, no group/other write); owners are root.

MAX_MEMBERS = 200000  # members per tarball; a release with more is refused (memory and inodes stay bounded)
LINK_HOPS = 40  # symlinks followed while resolving one target, as the kernel's MAXSYMLINKS


def unsafe(message, member):
    return OpFailed("unsafe tarball: " + message, member=member)


def member_parts(name, strip):
    """The member's path inside the release as a tuple of names ((), when strip_components drops it)."""
    if name.startswith("/"):
        raise unsafe("absolute path %r" % name, name)
    if "\0" in name:
        raise unsafe("%r has a NUL byte in its name" % name, name)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise unsafe("%r leaves the release directory" % name, name)
    # Only releases/<v>/.upgrader/ is the engine's, but a .upgrader at any depth is refused: a different
    # strip_components must not turn a harmless-looking one into the engine's.
    if any(p.lower() == META for p in parts):
        raise unsafe("%r names %s/, which belongs to upgrader" % (name, META), name)
    return tuple(parts[strip:])


def member_kind(m):
    if m.isreg():
        return "file"
    if m.isdir():
        return "dir"
    if m.issym():
        return "symlink"
    if m.islnk():
        return "hardlink"
    raise unsafe("%r is a device or special file" % m.name, m.name)


def resolve_link(parts, links):
    """Where symlink ``parts`` points, followed through the archive's own symlinks (``links``: parts ->
    target), as parts relative to the release; None when it leaves the release or loops."""
    todo = list(links[parts].split("/"))
    if links[parts].startswith("/"):
        return None
    here = list(parts[:-1])
    hops = 0
    while todo:
        name = todo.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            if not here:
                return None
            here.pop()
            continue
        here.append(name)
        target = links.get(tuple(here))
        if target is not None:
            hops += 1
            if hops > LINK_HOPS or target.startswith("/"):
                return None
            here.pop()
            todo = target.split("/") + todo
    return tuple(here)


def validate_members(tar, strip, unreadable):
    """Judge every member before anything is written: [(member, kind, parts, link parts)], total bytes."""
    plan, kinds, links, total, count = [], {}, {}, 0, 0
    while True:
        try:
            m = tar.next()
        except unreadable as exc:
            raise OpFailed("not a readable tarball: %s" % exc) from None
        if m is None:
            break
        count += 1
        if count > MAX_MEMBERS:  # counted before strip_components: tarfile keeps every member read
            raise unsafe("more than %d members" % MAX_MEMBERS, m.name)
        parts = member_parts(m.name, strip)
        kind = member_kind(m)
        if not parts:
            continue
        if m.size > MAX_MEMBER_BYTES:
            raise unsafe("%r is %d bytes" % (m.name, m.size), m.name)
        if parts in kinds and not (kind == "dir" == kinds[parts]):
            raise unsafe("%r appears twice" % m.name, m.name)
        target = None
        if kind == "hardlink":
            target = member_parts(m.linkname, strip)
            if kinds.get(target) not in ("file", "hardlink"):
                raise unsafe(
                    "hardlink %r -> %r is not to a regular file earlier in the archive" % (m.name, m.linkname), m.name
                )
        elif kind == "symlink":
            if "\0" in m.linkname or not m.linkname:
                raise unsafe("link %r has an empty target or a NUL byte in it" % m.name, m.name)
            links[parts] = m.linkname
        kinds[parts] = kind
        total += m.size if kind == "file" else 0
        plan.append((m, kind, parts, target))
    for m, kind, parts, _ in plan:
        for i in range(1, len(parts)):
            if kinds.get(parts[:i], "dir") != "dir":
                raise unsafe("%r lies beneath %s %r" % (m.name, kinds[parts[:i]], "/".join(parts[:i])), m.name)
        if kind == "symlink":
            where = resolve_link(parts, links)
            if where is None:
                raise unsafe("link %r -> %r points outside the release" % (m.name, m.linkname), m.name)
            if where and where[0].lower() == META:
                raise unsafe("link %r -> %r points into %s/" % (m.name, m.linkname, META), m.name)
    return plan, total


def data_filter_check(tarfile, plan, dest):
    """Where this Python has tarfile's "data" filter (3.12, 3.11.4+), it must accept every member too."""
    check = getattr(tarfile, "data_filter", None)
    if check is None:
        return
    for m, _kind, parts, target in plan:
        renamed = m.replace(name="/".join(parts), linkname="/".join(target) if target else m.linkname, deep=False)
        try:
            check(renamed, dest)
        except tarfile.FilterError as exc:
            raise unsafe("%r: %s" % (m.name, exc), m.name) from None


NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def open_parent(top, parts, made):
    """An fd for the directory holding ``parts``, made (0755) as needed, never through a symlink."""
    fd = os.dup(top)
    try:
        for i, name in enumerate(parts[:-1]):
            if parts[: i + 1] not in made:
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                made.add(parts[: i + 1])
            sub = os.open(name, NOFOLLOW_DIR, dir_fd=fd)
            os.close(fd)
            fd = sub
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_member(tar, top, m, kind, parts, target, made):
    import shutil
    import stat

    parent = open_parent(top, parts, made)
    name = parts[-1]
    try:
        if kind == "dir":
            if parts not in made:
                try:
                    os.mkdir(name, 0o755, dir_fd=parent)
                except FileExistsError:
                    if not stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                        raise
                made.add(parts)
        elif kind == "symlink":
            os.symlink(m.linkname, name, dir_fd=parent)
        elif kind == "hardlink":
            src = open_parent(top, target, made)
            try:
                if not stat.S_ISREG(os.stat(target[-1], dir_fd=src, follow_symlinks=False).st_mode):
                    raise unsafe("hardlink %r is not to a regular file" % m.name, m.name)
                os.link(target[-1], name, src_dir_fd=src, dst_dir_fd=parent, follow_symlinks=False)
            finally:
                os.close(src)
        else:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=parent)
            with os.fdopen(fd, "wb") as out, tar.extractfile(m) as data:
                shutil.copyfileobj(data, out, 1 << 20)
                os.fchmod(out.fileno(), (m.mode & 0o755) | stat.S_IRUSR)
    finally:
        os.close(parent)


def extract_safely(archive, dest, strip):
    """Unpack ``archive`` into ``dest`` (which must not exist yet), or refuse it whole, leaving nothing."""
    import shutil
    import tarfile
    import zlib

    unreadable = (tarfile.TarError, EOFError, OSError, ValueError, zlib.error)  # what a corrupt archive raises
    try:
        tar = tarfile.open(archive, "r:*")
    except unreadable as exc:
        raise OpFailed("not a readable tarball: %s" % exc) from None
    with tar:
        plan, total = validate_members(tar, strip, unreadable)
        data_filter_check(tarfile, plan, dest)
        if total > free_mb(os.path.dirname(dest)) * (1 << 20):
            raise OpFailed("not enough disk: release needs %d MB" % (total >> 20), errno=28)
        os.mkdir(dest, 0o755)
        try:
            top = os.open(dest, NOFOLLOW_DIR)
            try:
                made = {()}
                for m, kind, parts, target in plan:
                    write_member(tar, top, m, kind, parts, target, made)
            finally:
                os.close(top)
        except BaseException as exc:
            shutil.rmtree(dest, ignore_errors=True)  # rmtree does not follow the symlinks it removes
            if isinstance(exc, unreadable) and not isinstance(exc, OSError):
                raise OpFailed("not a readable tarball: %s" % exc) from None
            raise


def op_precheck(ctx, s):
    need = s.get("min_free_disk_mb", 0)
    free = free_mb(ctx["root"])
    if free < need:
        raise OpFailed("only %d MB free under %s, need %d MB" % (free, ctx["root"], need), free_disk_mb=free)
    results, source = [], None
    if s.get("healthy_before"):
        current = current_version(ctx["root"])
        ctx["expect_version"] = current
        # The running release is checked with what it was verified with when installed, if this host
        # recorded that: the new release's checks may not fit it (riskgw 2.5's `config_schema: 2`
        # failed every healthy 2.4.0).  Without a record, the checks sent (the playbook's).
        recorded = recorded_definition(ctx["root"], ctx["component"], current) if current else None
        checks, source = s.get("checks", []), "sent"
        if recorded:
            checks, source = with_release(recorded["checks"], ctx["root"], current), "recorded"
        ok, results = run_checks(checks, ctx)
        if not ok:
            raise OpFailed(
                "component is not healthy before the upgrade (%s checks of %s): %s"
                % (source, current, failure(results)),
                checks=results,
                source=source,
                unhealthy=True,  # the release it runs fails its checks: on no verified release, untouched
            )
    ok, more = run_checks(s.get("commands", []), ctx)
    if not ok:
        raise OpFailed("pre-check failed: %s" % failure(more), checks=more)
    return {"free_disk_mb": free, "checks": results + more, "healthy_source": source}


def failure(results):
    bad = [r for r in results if not r["ok"]]
    return "%s: %s" % (bad[0]["check"], bad[0]["reason"]) if bad else "unknown"


def op_stop(ctx, s):
    how = service_stop(s["service"])
    return {"service": service_state(s["service"]), "how": how}


def op_switch(ctx, s):
    root, version = ctx["root"], s["version"]
    old = current_version(root)
    forget_verified(ctx["component"])  # the release about to be current is not verified yet
    flip(root, version)
    if old and old != version:
        set_release_meta(
            root, version, "previous.json", {"version": old, "run": ctx["run"], "at": now(), "t": time.time()}
        )
    return {"previous": old, "current": version}


def release_relative(rel):
    """A carry_over name: a plain relative path inside a release, never into .upgrader/."""
    parts = [p for p in str(rel).split("/") if p not in ("", ".")]
    if str(rel).startswith("/") or not parts or ".." in parts or parts[0].lower() == META or "\0" in str(rel):
        raise OpFailed("carry_over file %r is not a plain path inside the release" % (rel,), file=rel)
    return tuple(parts)


def open_dir_path(top, names):
    """An fd for the directory ``names`` below the directory fd ``top``, never through a symlink."""
    fd = os.dup(top)
    for name in names:
        try:
            sub = os.open(name, NOFOLLOW_DIR, dir_fd=fd)
        finally:
            os.close(fd)
        fd = sub
    return fd


def carry_one(src_top, dst_top, parts):
    """Copy releases/<from>/parts to releases/<version>/parts (through a new unguessable temporary file);
    False if the old release has no such file.  Neither side is followed through a symlink."""
    import shutil
    import stat

    try:
        sdir = open_dir_path(src_top, parts[:-1])
    except FileNotFoundError:
        return False
    try:
        try:
            fin = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=sdir)
        except FileNotFoundError:
            return False
    finally:
        os.close(sdir)
    with os.fdopen(fin, "rb") as reader:
        st = os.fstat(reader.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OpFailed("carry_over file %s is not a regular file in the old release" % "/".join(parts))
        ddir = open_parent(dst_top, parts, set())
        tmp = ".%s.upgrader-%s" % (parts[-1][:100], token())
        try:
            fout = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=ddir)
            try:
                with os.fdopen(fout, "wb") as writer:
                    shutil.copyfileobj(reader, writer, 1 << 20)
                    os.fchown(writer.fileno(), st.st_uid, st.st_gid)
                    os.fchmod(writer.fileno(), stat.S_IMODE(st.st_mode))
                    writer.flush()
                    os.fsync(writer.fileno())
                os.replace(tmp, parts[-1], src_dir_fd=ddir, dst_dir_fd=ddir)
            except BaseException:
                try:
                    os.unlink(tmp, dir_fd=ddir)
                except OSError:
                    pass
                raise
        finally:
            os.close(ddir)
    return True


def op_carry_over(ctx, s):
    root = ctx["root"]
    install_dirs(root)
    src = os.open(release_path(root, s["from"]), NOFOLLOW_DIR)
    try:
        dst = os.open(release_path(root, s["version"]), NOFOLLOW_DIR)
        try:
            copied = [rel for rel in s.get("files", []) if carry_one(src, dst, release_relative(rel))]
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return {"copied": copied}


def config_path(path):
    """A config file the agent backs up and restores: absolute, plain, in a directory only root can write,
    and not itself a symlink (restoring would replace the link, backing up would read elsewhere)."""
    import stat

    path = str(path)
    if not path.startswith("/") or "/../" in path + "/" or "/./" in path + "/" or "//" in path or "\0" in path:
        raise OpFailed("config file %r is not a plain absolute path" % path, file=path)
    check_dir(os.path.dirname(path))
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise OpFailed("config file %s is a symlink; name the real file in install.config_files" % path, file=path)
    return path if stat.S_ISREG(st.st_mode) else None


def op_migrate(ctx, s):
    import shutil

    root, version = ctx["root"], s["version"]
    install_dirs(root)
    present = [p for p in (config_path(f) for f in s.get("files", [])) if p]
    meta = meta_dir(root, version)
    backup = os.path.join(meta, "config-before")
    if os.path.lexists(backup):
        shutil.rmtree(backup)
    saved = []
    for path in present:
        dst = backup + path
        os.makedirs(os.path.dirname(dst), mode=0o700, exist_ok=True)  # inside root's own 0700 .upgrader/
        copy_file(path, dst)
        saved.append(path)
    set_release_meta(
        root, version, "migration.json", {"from": s.get("from"), "files": saved, "run": ctx["run"], "at": now()}
    )
    proc = run(s["argv"], s.get("timeout", 60))
    if proc.returncode != 0:
        restore_config(root, version)
        raise OpFailed(
            "config migration failed (exit %d): %s" % (proc.returncode, tail(proc.stderr).strip()),
            stdout=tail(proc.stdout),
            stderr=tail(proc.stderr),
            restored=saved,
        )
    return {"backed_up": saved, "stdout": tail(proc.stdout)}


def migration_record(root, version):
    """(.upgrader dir, migration.json) of ``version``, or (None, None); raises OpFailed if restoring it
    would write where it must not.  Checked before a rollback stops anything."""
    meta = os.path.join(release_path(root, version), META)
    if not os.path.isdir(meta):
        return None, None
    check_dir(meta)  # what it names is written back as root: only trust it from root's own directory
    info = read_json(os.path.join(meta, "migration.json"))
    if not isinstance(info, dict) or not isinstance(info.get("files", []), list):
        return None, None
    for path in info.get("files", []):
        config_path(path)
    return meta, info


def restore_config(root, version):
    """Undo the migration that was run when switching to ``version``; returns files restored."""
    meta, info = migration_record(root, version)
    if info is None:
        return []
    backup = os.path.join(meta, "config-before")
    restored = []
    for path in info.get("files", []):
        src = backup + path
        if os.path.isfile(src):
            tmp = "%s.upgrader-restore-%s" % (path, token())
            copy_file(src, tmp)
            os.replace(tmp, path)
            restored.append(path)
    os.unlink(os.path.join(meta, "migration.json"))
    return restored


LOG_STAT_TIMEOUT = 5.0  # seconds for the size of a log at a start


def _size_or_zero(path):
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def remember_log_offsets(ctx, paths):
    """Log checks only count lines written after this start: remember where each log ends now."""
    offsets = {}
    for path in paths:
        # The service user owns the log and its directory: a symlink there may lead into a mount that
        # never answers.  Not followed (lstat; the check refuses a symlink anyway), and bounded: a start
        # must not hang with the host lock held (issue 25 §4).  Unknown: 0, the whole file is read.
        size = bounded(lambda p=path: _size_or_zero(p), LOG_STAT_TIMEOUT)
        offsets[path] = size if isinstance(size, int) else 0
    write_json_atomic(os.path.join(state_dir(ctx["component"]), "start.json"), offsets)


def op_start(ctx, s):
    remember_log_offsets(ctx, s.get("logs", []))
    service_start(s["service"])
    return {"service": service_state(s["service"])}


def op_verify(ctx, s):
    ctx["expect_version"] = version = s.get("expect_version")
    ok, results = run_checks(s.get("checks", []), ctx, service=s.get("service"))
    if not ok:
        raise OpFailed("verify failed: %s" % failure(results), checks=results)
    out = {"checks": results}
    if version and version == current_version(ctx["root"]) and isinstance(s.get("service"), dict):
        # A verified install: keep what it was verified with, for an emergency rollback back to it.
        out["recorded"] = record_definition(ctx, version, s["service"], s.get("checks", []))
    if version and version == current_version(ctx["root"]):
        record_verified(ctx, version, "verify", [c.get("name") for c in s.get("checks", [])])
    return out


def op_bake(ctx, s):
    ctx["expect_version"] = s.get("expect_version")
    deadline = time.monotonic() + s["duration"]
    rounds = 0
    while True:
        ok, results = run_checks(s.get("checks", []), ctx, retries=False, service=s.get("service"))
        rounds += 1
        if not ok:
            raise OpFailed(
                "bake failed after %d round(s): %s" % (rounds, failure(results)), checks=results, rounds=rounds
            )
        if time.monotonic() >= deadline:
            return {"rounds": rounds}
        pause(ctx, max(0.0, min(s.get("interval", 5), deadline - time.monotonic())))


def rollback_chain(root, current, target):
    """Releases whose migrations must be undone, newest first, walking the recorded previous links."""
    chain, seen, here = [], set(), current
    while here and here != target and here not in seen:
        seen.add(here)
        chain.append(here)
        here = (release_meta(root, here, "previous.json") or {}).get("version")
    return chain if here == target else None


def installed_by(root, version):
    """{version (the release before), run, at}: what the switch to ``version`` recorded; {} if nothing."""
    data = release_meta(root, version, "previous.json", {}) if version else {}
    return data if isinstance(data, dict) and isinstance(data.get("version"), str) else {}


def run_start(root, current):
    """The release this host was on before the run that installed ``current``: the previous links are
    walked while they belong to that run (a multi-hop run 5.0 -> 5.1 -> 5.2 goes back to 5.0), and the
    farthest of them still staged is taken.  None if nothing is recorded."""
    first = installed_by(root, current)
    run, here = first.get("run"), first.get("version")
    chain, seen = [], set([current])
    while here and here not in seen:
        seen.add(here)
        chain.append(here)
        back = installed_by(root, here)
        if not run or back.get("run") != run:
            break
        here = back.get("version")
    staged = [v for v in chain if is_staged(root, v)]
    return staged[-1] if staged else (chain[0] if chain else None)


def is_staged(root, version):
    try:
        return os.path.isdir(release_path(root, version))
    except OpFailed:
        return False


def default_target(root, current, undo):
    """(target, None) or (None, why there is nothing to undo) for a rollback without --to.

    ``undo`` (from the controller's look at the fleet): {"runs": the runs being rolled back,
    "seen": this host's clock (time.time()) when it looked}.  A host whose current release was installed
    by another run, before the controller looked, is untouched by the run being rolled back."""
    if not current:
        return None, "nothing installed"
    by = installed_by(root, current)
    if not by:
        return None, "no previous release recorded for %s" % current
    if isinstance(undo, dict):
        runs = undo.get("runs") or []
        seen, switched = undo.get("seen"), by.get("t")
        racing = isinstance(seen, (int, float)) and isinstance(switched, (int, float)) and switched > seen
        if by.get("run") not in runs and not racing:
            return None, "untouched: %s was installed by run %s, not by the run being rolled back" % (
                current,
                by.get("run"),
            )
    return run_start(root, current), None


# The release the host last verified (by an install's verify or a rollback's), root only, next to the
# host lock.  Removed before the current link moves, so it never names an unverified current release.
VERIFIED = "verified.json"


def record_verified(ctx, version, how, checks):
    try:
        write_json_atomic(
            os.path.join(state_dir(ctx["component"]), VERIFIED),
            {"version": version, "run": ctx["run"], "at": now(), "how": how, "checks": checks},
        )
    except (OSError, OpFailed):
        pass  # best effort: the host journal still has the verify


def forget_verified(component):
    remove_quietly(os.path.join(state_dir(component), VERIFIED))


def verified_record(root, component, installed):
    """The release this host last verified ({version, run, at, how, checks}), or None if it has no record.

    An install verified before verified.json existed counts by its recorded definition, if that verify
    came after the switch that made it current."""
    here = os.path.join(STATE, component)
    data = read_private_json(os.path.join(here, VERIFIED)) if os.path.isdir(here) else None
    if isinstance(data, dict) and isinstance(data.get("version"), str):
        return data
    entry = recorded_definition(root, component, installed) if installed and os.path.isdir(here) else None
    since = installed_by(root, installed).get("at") if installed else None
    if entry and (not since or str(entry.get("at") or "") >= since):
        return {
            "version": installed,
            "run": entry.get("run"),
            "at": entry.get("at"),
            "how": "verify",
            "checks": [c.get("name") for c in entry.get("checks", [])],
        }
    return None


# Where a component is installed, as the last program that changed it was told (root only).  A
# controller without the playbook (another desk, a laptop) sends no root and the host's record is used.
INSTALL = "install.json"


def recorded_root(component):
    here = os.path.join(STATE, component)
    data = read_private_json(os.path.join(here, INSTALL)) if os.path.isdir(here) else None
    root = data.get("root") if isinstance(data, dict) else None
    return root if isinstance(root, str) and root.startswith("/") else None


def record_root(component, root):
    if root and recorded_root(component) != root:
        write_json_atomic(os.path.join(state_dir(component), INSTALL), {"root": root, "at": now()})


RELEASE_PLACEHOLDER = re.compile(r"\{(release|version)\}")


def with_release(value, root, version):
    """``value`` (a service, a check list, a version probe) with ``{release}`` and ``{version}`` filled in.

    The controller leaves these two for the agent where only the host knows the release: the current
    one for facts, the recorded previous one for a rollback.  Only argument lists (lists of strings)
    are touched.  A placeholder with no release to name (``version`` None) raises OpFailed: it never
    becomes an empty string.
    """
    if isinstance(value, dict):
        return dict((k, with_release(v, root, version)) for k, v in value.items())
    if not isinstance(value, list):
        return value
    if not (value and all(isinstance(arg, str) for arg in value)):
        return [with_release(v, root, version) for v in value]

    def fill(match):
        if version is None:
            raise OpFailed("%s has no value: no release is current under %s" % (match.group(0), root))
        return "%s/releases/%s" % (root, version) if match.group(1) == "release" else version

    return [RELEASE_PLACEHOLDER.sub(fill, arg) for arg in value]


def op_rollback(ctx, s):
    """Back to ``to`` (default: the release before the run that installed the current one): stop, restore
    configs, flip, start, verify.  A host with nothing to undo says so and changes nothing."""
    root = ctx["root"]
    if not root:
        return {
            "nothing": True,
            "reason": "upgrader has no record of where %s is installed here" % ctx["component"],
            "from": None,
            "to": None,
            "steps": [],
        }
    current = current_version(root)
    target = s.get("to")
    if not target:
        target, why = default_target(root, current, s.get("undo"))
        if target is None and not stopped_here(ctx, s, current):
            return {"nothing": True, "reason": why, "from": current, "to": current, "steps": []}
        target = target or current  # nothing to undo, but its service is down (an apply taken over after
        # its stop): the current release is started and verified, never left stopped
    install_dirs(root)
    if not os.path.isdir(release_path(root, target)):
        raise OpFailed(
            "release %s is not staged on this host" % target,
            missing=target,
            staged=staged_versions(root),
            current=current,
            refused=True,
        )
    service, checks, used = rollback_definition(ctx, s, target, current)
    svc = with_release(service, root, target)  # {release}: the release rolled back to
    checks = with_release(checks, root, target)
    used["checks"] = [c.get("name") for c in checks]
    append_journal(ctx["component"], dict(used, event="rollback-definition", run=ctx["run"], version=target, at=now()))
    logs = [c["log"]["path"] for c in checks if c["kind"] == "log"]
    steps = []
    if current != target:
        chain = rollback_chain(root, current, target) or ([current] if current else [])
        for version in chain:  # refuse before stopping, not with the service down
            try:
                migration_record(root, version)
            except OpFailed as exc:
                exc.detail["refused"] = True
                raise
        steps.append("stop" if service_stop(svc) == "stopped" else "stop (killed)")
        restored = []
        for version in chain:
            restored += restore_config(root, version)
        steps.append("restore-config:%d" % len(restored))
        forget_verified(ctx["component"])
        flip(root, target)
        steps.append("switch")
        remember_log_offsets(ctx, logs)
        service_start(svc)
        steps.append("start")
    elif service_state(svc) != "active":
        remember_log_offsets(ctx, logs)
        try:
            service_start(svc)
        except OpFailed as exc:
            # Nothing was rolled back: the release it runs would not start.  Said as such, not as a
            # failed rollback (the controller reports the host unhealthy, for a human).
            exc.detail.update(unhealthy=True, current=current, to=target, steps=steps, definition=used)
            exc.detail["from"] = current
            raise
        steps.append("start")
    ctx["expect_version"] = target
    ok, results = run_checks(checks, ctx, service=svc)
    if not ok:
        raise OpFailed(
            ("rolled back to %s but verify failed: %s" if current != target else "%s does not pass its checks: %s")
            % (target, failure(results)),
            checks=results,
            current=current_version(root),
            steps=steps,
            definition=used,
            to=target,
            unhealthy=current == target,  # nothing was switched: the release it runs is unhealthy
            **{"from": current},
        )
    record_verified(ctx, target, "rollback", used["checks"])
    return {"from": current, "to": target, "steps": steps, "checks": results, "definition": used}


def stopped_here(ctx, s, current):
    """True if ``current`` is installed and its service (as the rollback would run it) is not active."""
    if not current:
        return False
    try:
        service = rollback_definition(ctx, s, current, current)[0]
        return service_state(with_release(service, ctx["root"], current)) != "active"
    except OpFailed:
        return False  # no way to know how it runs: nothing is started


def rollback_definition(ctx, s, target, current):
    """(service, checks, how chosen) to roll back to ``target`` with: what the host recorded when it last
    verified that release; else what the controller sent for that very version (``definitions``); else
    the sent service with no checks (reported as not applicable): never another release's checks.

    A program without ``definitions`` (an apply's undo) is verified with what it sent, as before."""
    recorded = recorded_definition(ctx["root"], ctx["component"], target) if s.get("recorded") else None
    if recorded:  # what the release was installed and verified with, not a newer playbook's guess
        return (
            recorded["service"],
            recorded["checks"],
            {"source": "recorded", "recorded_run": recorded.get("run"), "recorded_at": recorded.get("at")},
        )
    if "definitions" not in s:
        return s["service"], s.get("checks", []), {"source": "sent"}
    sent = (s.get("definitions") or {}).get(target)
    if isinstance(sent, dict) and isinstance(sent.get("service"), dict):
        return sent["service"], sent.get("checks") or [], {"source": "sent", "playbook": sent.get("playbook")}
    service = s.get("service")
    if not isinstance(service, dict):  # no playbook at all: the service another release here was verified with
        for version in [current, *staged_versions(ctx["root"])]:
            other = recorded_definition(ctx["root"], ctx["component"], version) if version else None
            if other:
                service = other["service"]
                break
    if not isinstance(service, dict):
        raise OpFailed(
            "no record of how to run %s %s on this host and no playbook for it: name one with "
            "--playbook or --playbooks" % (ctx["component"], target),
            current=current,
            to=target,
            refused=True,
        )
    return service, [], {"source": "none", "not_applicable": "no checks recorded for %s and no playbook of it" % target}


def op_prune(ctx, s):
    import shutil

    root = ctx["root"]
    install_dirs(root)
    keep = max(2, s.get("keep", 3))
    current = current_version(root)
    protected = {current, (release_meta(root, current, "previous.json") or {}).get("version")} if current else set()
    versions = staged_versions(root)
    removable = [v for v in versions if v not in protected]
    removable.sort(key=lambda v: os.stat(os.path.join(releases_dir(root), v)).st_mtime)
    excess = len(versions) - keep
    removed = []
    for version in removable[: max(0, excess)]:
        shutil.rmtree(release_path(root, version), ignore_errors=True)
        record_staged(ctx["component"], version, None)
        removed.append(version)
    for name in os.listdir(releases_dir(root)) if os.path.isdir(releases_dir(root)) else []:
        if name.startswith(".staging-"):
            shutil.rmtree(os.path.join(releases_dir(root), name), ignore_errors=True)
    return {"removed": removed}


def op_unstage(ctx, s):
    import shutil

    root, version = ctx["root"], s["version"]
    install_dirs(root)
    entry = staged_entry(root, ctx["component"], version) or {}
    if current_version(root) == version or entry.get("run") != ctx["run"]:
        return {"removed": False}
    shutil.rmtree(release_path(root, version), ignore_errors=True)
    record_staged(ctx["component"], version, None)
    return {"removed": True}


OPS = {
    "facts": op_facts,
    "lock": op_lock,
    "stage": op_stage,
    "precheck": op_precheck,
    "stop": op_stop,
    "switch": op_switch,
    "carry_over": op_carry_over,
    "migrate": op_migrate,
    "start": op_start,
    "verify": op_verify,
    "bake": op_bake,
    "rollback": op_rollback,
    "prune": op_prune,
    "unstage": op_unstage,
}
READ_ONLY = ("facts",)


END = "@@upgrader-end "  # closes each program's output when serving several (see serve)


def main(argv):
    """argv[1], when given, is the one program to run (base64 JSON); without it, serve those sent on stdin."""
    os.umask(0o022)
    if len(argv) < 2:
        return serve()
    return run_program(json.loads(base64.b64decode(argv[1])))


def serve():
    """Run one program per line of stdin (base64 JSON) until EOF.

    The controller keeps this process for the whole run, so later programs on the host cost no
    SSH exec, sudo, interpreter start or imports.  Each program's output ends with an END line
    carrying its status.  EOF (the controller closed the connection or died) ends the process.
    """
    for line in iter(sys.stdin.readline, ""):
        status = run_program(json.loads(base64.b64decode(line.strip())))
        sys.stdout.write("%s%d\n" % (END, status))
        sys.stdout.flush()
    return 0


# ---------------------------------------------------------------- one program at a time per component
#
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
TAKEOVER_WAIT = 30.0  # default seconds a takeover waits for the program in flight to end its current op
MAX_TAKEOVER_WAIT = 3600.0
BUSY_WAIT = 5.0  # seconds any other program waits for the program lock
TAKEOVER_POLL = 0.1  # seconds: how often a check's or bake's wait looks for a takeover request


class TakenOver(OpFailed):
    pass


def check_takeover(ctx):
    lock = ctx.get("lock")
    req = lock.request() if lock is not None else None
    if req:
        raise TakenOver(
            "taken over by rollback run %s (pid %s)" % (req.get("run"), req.get("pid")), handed_over=True, takeover=req
        )


def proc_start(pid):
    """The process's start time in clock ticks (field 22 of /proc/PID/stat): tells a pid from a reused one."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def alive(who):
    pid = (who or {}).get("pid")
    return isinstance(pid, int) and pid > 0 and proc_start(pid) == who.get("start")


def is_agent_holding(pid, lock_fd):
    """True if /proc says ``pid`` runs an upgrader agent (python, upgrader's loader or agent on its command
    line) and has the lock file open: only such a process is ever killed."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            args = fh.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return False
    if not args or "python" not in os.path.basename(args[0]):
        return False
    if not any("upgrader" in a or "exec(base64.b64decode(sys.stdin" in a for a in args[1:]):
        return False
    mine = os.fstat(lock_fd)
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return False
    for fd in fds:
        try:
            st = os.stat("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
            return True
    return False


def descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry, "rb") as fh:
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


def kill_holder(pid):
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
    def __init__(self, ctx):
        self.ctx = ctx
        self.dir = state_dir(ctx["component"])
        self.path = os.path.join(self.dir, PROGRAM_LOCK)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
        self.me = {"pid": os.getpid(), "start": proc_start(os.getpid()), "run": ctx["run"], "kind": ctx.get("kind")}

    def _try(self):
        import fcntl

        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _wait(self, seconds):
        deadline = time.monotonic() + seconds
        while not self._try():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def holder(self):
        try:
            data = json.loads(os.pread(self.fd, 4096, 0).decode() or "null")
        except ValueError:
            data = None
        return data if isinstance(data, dict) else {}

    def _own(self):
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(dict(self.me, since=now())).encode(), 0)

    def request(self):
        """A live takeover request by another run, or None."""
        req = read_json(os.path.join(self.dir, TAKEOVER))
        if isinstance(req, dict) and req.get("run") != self.ctx["run"] and alive(req):
            if self.me.get("kind") == "rollback" and req.get("kind") == "rollback":
                return None  # a rollback is never cut short by another: that one waits (take_over)
            return req
        return None

    def acquire(self):
        req = self.request()
        if req:
            raise OpFailed(
                "taken over by rollback run %s (pid %s)" % (req.get("run"), req.get("pid")),
                handed_over=True,
                takeover=req,
            )
        if not self._wait(BUSY_WAIT):
            held = self.holder()
            running = "another upgrader program is running for %s on this host (run %s, pid %s, since %s)" % (
                self.ctx["component"],
                held.get("run"),
                held.get("pid"),
                held.get("since"),
            )
            owner = read_json(os.path.join(self.dir, "lock.json"))
            if isinstance(owner, dict) and owner.get("run") != self.ctx["run"]:  # say it as op_lock would
                running = "locked by run %s (%s, since %s): %s" % (
                    owner.get("run"),
                    owner.get("operator"),
                    owner.get("since"),
                    running,
                )
            raise OpFailed(running, holder=held, busy=True)
        self._own()

    def take_over(self, wait):
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
                            "another rollback (run %s, pid %s) has been rolling back %s on this host "
                            "for over %ss; not interrupted"
                            % (held.get("run"), held.get("pid"), self.ctx["component"], wait),
                            holder=held,
                            busy=True,
                        )
                    pid = held.get("pid")
                    if not (isinstance(pid, int) and alive(held) and is_agent_holding(pid, self.fd)):
                        raise OpFailed(
                            "the program lock of %s is held by pid %s, which is not an upgrader "
                            "agent this one can verify; not killed" % (self.ctx["component"], pid),
                            holder=held,
                        )
                    kill_holder(pid)
                    how = "killed"
                    if not self._wait(10.0):
                        raise OpFailed("killed pid %s, yet the program lock is still held" % pid, holder=held)
        finally:
            if (read_json(request) or {}).get("pid") == self.me["pid"]:
                remove_quietly(request)
        self._own()
        seconds = round(time.monotonic() - started, 3)
        out = {"how": how, "seconds": seconds, "holder": held or None}
        append_journal(self.ctx["component"], {"event": "takeover", "run": self.ctx["run"], "at": now(), **out})
        return out

    def release(self):
        if self.fd is not None:
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = None


def program_kind(program):
    """The kind of run (apply, rollback, unlock) its lock operation names, or None."""
    for step in program.get("ops", []):
        if step.get("op") == "lock":
            return step.get("kind")
    return None


def program_lock_mode(program):
    """(needs the program lock, takeover wait or None): read-only programs skip it; handover/break take over."""
    ops = program.get("ops", [])
    needs = any(step.get("op") in OPS and step.get("op") not in READ_ONLY for step in ops)
    for step in ops:
        if step.get("op") == "lock" and step.get("mode") in ("handover", "break"):
            wait = step.get("takeover_wait", TAKEOVER_WAIT)
            wait = wait if isinstance(wait, (int, float)) and 0 <= wait <= MAX_TAKEOVER_WAIT else TAKEOVER_WAIT
            return True, float(wait)
    return needs, None


def run_program(program):
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


def run_ops(ctx, ops, lock):
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
        journaled = name not in READ_ONLY and not step.get("quiet")
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
            ok, out = False, {"error": "%s: %s" % (type(exc).__name__, exc)}
        seconds = round(time.monotonic() - started, 3)
        if journaled:
            try:
                append_journal(
                    ctx["component"], dict(record, phase="end", ok=ok, seconds=seconds, error=out.get("error"))
                )
            except (OSError, OpFailed) as exc:
                ok, out = False, dict(out, error=out.get("error") or "cannot write the host journal: %s" % exc)
        if interrupted is not None:
            return taken_over(ctx, index, step, interrupted, "during " + where)
        emit(dict(out, i=index, op=name, step=step.get("step"), ok=ok, seconds=seconds))
        if not ok and not step.get("continue_on_error"):
            status = 1
    return status


def taken_over(ctx, index, step, exc, when):
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
            "error": "%s %s" % (exc, when),
            "takeover": req,
            "stopped": step["op"],
        }
    )
    return 1


if __name__ == "upgrader-agent" or __name__ == "__main__":
    sys.exit(main(sys.argv))
