"""Emergency rollback of feedhandler with pyinfra v3, equivalent to `upgrader rollback feedhandler`.

Atomic flip of current (ln -sfn to a temp name + mv -T), restart via systemd, then the health wait
that bench/floor uses (GET /health: 200, status ok, the rolled-back version).  Run by
bench/rollback_compare.py as `pyinfra INVENTORY rollback_deploy.py -y --parallel 16 --no-wait`;
the version, port and poll interval come from --data (defaults below).
"""

from pathlib import Path

from pyinfra import host
from pyinfra.operations import server, systemd

COMPONENT = host.data.get("component", "feedhandler")
ROOT = f"/opt/{COMPONENT}"
TO = str(host.data.get("to", "3.0.0"))
PORT = int(host.data.get("port", 9101))
INTERVAL = float(host.data.get("poll_interval", 0.25))
HEALTH = (Path(__file__).resolve().parent.parent / "floor" / "health.sh").read_text()

server.shell(
    name="Flip current to the previous release atomically",
    commands=[f"ln -sfn releases/{TO} {ROOT}/.current.tmp && mv -T {ROOT}/.current.tmp {ROOT}/current"],
    _sudo=True,
)
systemd.service(
    name="Restart the service",
    service=f"{COMPONENT}.service",
    running=True,
    restarted=True,
    _sudo=True,
)
server.shell(
    name="Wait until it is healthy on the rolled-back version",
    commands=[f"{HEALTH}\nhealth {PORT} {TO} {INTERVAL}"],
    _shell_executable="bash",
)
