"""Whether a port or a process belongs to the service: its systemd control group, its user."""

from __future__ import annotations

import os
import re

from .errors import OpFailed
from .processes import run

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .shapes import Ctx, Spec


def process_scope(spec: Spec, ctx: Ctx, service: Spec | None = None) -> tuple[str | None, int | None, str]:
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
        words.append(f"in {unit}'s control group {cgroup}")
    if user:
        import pwd

        try:
            uid = pwd.getpwnam(user).pw_uid
        except KeyError:
            raise OpFailed(f"process check: no user {user!r} on this host") from None
        words.append(f"running as {user} (uid {uid})")
    if cgroup is None and uid is None:
        raise OpFailed(
            "a process check needs the service's systemd unit or process.user: any local user "
            "can run a process whose command line matches"
        )
    return cgroup, uid, " and ".join(words)


def unit_cgroup(unit: str, ctx: Ctx) -> str:
    """The control group systemd runs ``unit`` in (``ControlGroup``), remembered for the operation: a unit
    keeps its group across restarts.  OpFailed when it has none: it is not running."""
    known = ctx.setdefault("cgroups", {})
    cgroup = known.get(unit)
    if not isinstance(cgroup, str):
        proc = run(["systemctl", "show", "-p", "ControlGroup", unit], 10)
        cgroup = proc.stdout.strip().partition("=")[2].strip()
        if proc.returncode != 0 or not cgroup.startswith("/"):
            raise OpFailed(f"{unit} has no control group: it is not running")
        known[unit] = cgroup
    return str(cgroup)


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def url_host_port(url: str) -> tuple[str, int]:
    """(host, port) of an http:// or https:// URL (the agent's own parsing: no urllib import)."""
    scheme, _, rest = url.partition("://")
    hostport = rest.split("/", 1)[0].rpartition("@")[2]
    if hostport.startswith("["):
        host, _, port = hostport[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = hostport.partition(":")
    return host or "localhost", int(port) if port.isdigit() else (443 if scheme == "https" else 80)


def served_by_service(host: str, port: int, ctx: Ctx, service: Spec | None) -> str | None:
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
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return None
        except OSError:  # it ended while we looked
            continue
    return f"port {port} is not served by {unit}: a process outside its control group {cgroup} listens there"


def on_this_machine(host: str) -> bool:
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


def listening_inodes(port: int) -> set[str]:
    """``socket:[INODE]`` of every TCP socket listening on ``port`` (IPv4 and IPv6), from /proc/net."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh, None)
                for line in fh:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:
                        found.add(f"socket:[{fields[9]}]")
        except (OSError, ValueError):
            continue
    return found


def find_process(pattern: str, cgroup: str | None = None, uid: int | None = None) -> bool:
    """Is a process whose command line matches ``pattern`` running in ``cgroup`` (a control group path,
    or one below it) as real uid ``uid``?  None for either means no condition on it."""
    rx = re.compile(pattern)
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
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


def proc_uid(pid: str) -> int | None:
    """The real uid of process ``pid`` (/proc/PID/status), which setuid does not change."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


def in_cgroup(pid: str, cgroup: str) -> bool:
    """Is ``pid`` in ``cgroup`` or below it, in any hierarchy (cgroup v2 "0::/path", v1 "N:name=systemd:/path")?"""
    with open(f"/proc/{pid}/cgroup") as fh:
        for line in fh:
            path = line.rstrip("\n").split(":", 2)[-1]
            if path == cgroup or path.startswith(cgroup.rstrip("/") + "/"):
                return True
    return False
