"""Put lab hosts back to the baseline releases, out of band and in parallel.

Each host gets one tar stream on lxc-attach's stdin (artifacts, configs, units and the
script below), so this works whatever LXC backing store holds the rootfs. It produces
exactly the host layout the engine relies on (see lab/README.md).
"""

from __future__ import annotations

import io
import json
import shlex
import tarfile
from concurrent.futures import ThreadPoolExecutor

from lab import config, lxc
from lab.shell import LabError, log, timed
from testapp.releases import PORTS, baseline_config, systemd_unit

SEED_SCRIPT = r"""
set -eu
bundle=$1
units=""
for c in $COMPONENTS; do units="$units $c.service"; done
# A reset must not wait for a release that hangs on SIGTERM.
systemctl kill --signal=SIGKILL $units >/dev/null 2>&1 || true
systemctl stop $units >/dev/null 2>&1 || true
systemctl disable --quiet $units >/dev/null 2>&1 || true
systemctl reset-failed $units >/dev/null 2>&1 || true
rm -rf /var/lib/upgrader
for spec in $BASELINES; do
    c=${spec%%=*}
    v=${spec#*=}
    rm -rf "/opt/$c" "/etc/$c" "/var/log/$c" "/etc/systemd/system/$c.service" "/etc/systemd/system/$c.service.d"
    mkdir -p "/opt/$c/releases/$v" "/etc/$c" "/var/log/$c"
    tar -xzf "$bundle/artifacts/$c-$v.tar.gz" -C "/opt/$c/releases/$v" --no-same-owner
    ln -s "releases/$v" "/opt/$c/current"
    install -m 0644 "$bundle/etc/$c.conf" "/etc/$c/$c.conf"
    install -m 0644 "$bundle/units/$c.service" "/etc/systemd/system/$c.service"
done
systemctl daemon-reload
systemctl enable --now --quiet $units
"""

GUEST_COMMAND = (
    'd=$(mktemp -d /var/tmp/lab-seed.XXXXXX) && tar -xf - -C "$d" && sh "$d/seed.sh" "$d"; rc=$?; rm -rf "$d"; exit $rc'
)


def bundle() -> bytes:
    """The tar stream every host receives (same bytes for every host)."""
    baselines = " ".join(f"{c}={v}" for c, v in config.BASELINES.items())
    script = f'COMPONENTS="{" ".join(config.COMPONENTS)}"\nBASELINES="{baselines}"\n' + SEED_SCRIPT
    files = {"seed.sh": script.encode()}
    for component, version in config.BASELINES.items():
        artifact = config.ARTIFACTS / f"{component}-{version}.tar.gz"
        if not artifact.exists():
            raise LabError(f"{artifact} missing: run `python testapp/build.py` (or `invoke artifacts`) first")
        files[f"artifacts/{artifact.name}"] = artifact.read_bytes()
        files[f"etc/{component}.conf"] = baseline_config(component).encode()
        files[f"units/{component}.service"] = systemd_unit(component).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def seed_host(host: config.Host, data: bytes) -> None:
    lxc.attach(host.container, GUEST_COMMAND, input=data, timeout=60)


# Runs in the guest (its own python3): the controller has no route to a datacenter host's ports.
HEALTH_SCRIPT = r"""
import json, sys, time, urllib.request
ports, want, seconds = json.loads(sys.argv[1]), json.loads(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + seconds
while True:
    bodies = {}
    for component, port in ports.items():
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=1) as response:
                bodies[component] = json.loads(response.read())
        except (OSError, ValueError):
            bodies[component] = None
    done = all(bodies[c] and bodies[c].get("version") == v and bodies[c].get("status") == "ok"
               for c, v in want.items())
    if done or time.monotonic() > deadline:
        break
    time.sleep(0.05)
print(json.dumps(bodies))
"""


def health(host: config.Host, *, want: dict[str, str] | None = None, seconds: float = 0) -> dict[str, dict | None]:
    """Each component's /health body (None if it does not answer), read inside the guest via lxc-attach.

    With ``want`` (component -> version), polls for up to ``seconds`` until each reports that version.
    """
    argv = (
        f"python3 -c {shlex.quote(HEALTH_SCRIPT)} {shlex.quote(json.dumps(PORTS))} "
        f"{shlex.quote(json.dumps(want or {}))} {seconds}"
    )
    proc = lxc.attach(host.container, argv, timeout=seconds + 30, check=False)
    try:
        return json.loads(proc.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return dict.fromkeys(PORTS)


def wait_healthy(host: config.Host, seconds: float) -> None:
    """Every component on `host` answers /health with its baseline version."""
    bodies = health(host, want=dict(config.BASELINES), seconds=seconds)
    for component, version in config.BASELINES.items():
        body = bodies.get(component)
        if not (body and body.get("version") == version and body.get("status") == "ok"):
            raise LabError(f"{host.name}: {component} not healthy at baseline {version} (last: {body})")


def reset(hosts: list[config.Host]) -> None:
    """Seed (or re-seed) `hosts` to the baseline, all in parallel; waits until healthy.  Jump hosts are
    skipped: they carry no test apps."""
    hosts = [h for h in hosts if not h.is_jump]
    data = bundle()
    with timed(f"reset {len(hosts)} hosts"), ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        list(pool.map(lambda h: seed_host(h, data), hosts))
        list(pool.map(lambda h: wait_healthy(h, 20), hosts))
    log(
        "baseline: "
        + ", ".join(f"{c} {v}" for c, v in config.BASELINES.items())
        + " on "
        + " ".join(h.name for h in hosts)
    )
