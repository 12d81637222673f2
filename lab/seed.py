"""Put lab hosts back to the baseline releases, out of band and in parallel.

Each host gets one tar stream on lxc-attach's stdin (artifacts, configs, units and the
script below), so this works whatever LXC backing store holds the rootfs. It produces
exactly the host layout the engine relies on (see lab/README.md).
"""

from __future__ import annotations

import io
import json
import tarfile
import time
import urllib.error
import urllib.request
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
    'd=$(mktemp -d /var/tmp/lab-seed.XXXXXX) && tar -xf - -C "$d" && '
    'sh "$d/seed.sh" "$d"; rc=$?; rm -rf "$d"; exit $rc'
)


def bundle() -> bytes:
    """The tar stream every host receives (same bytes for every host)."""
    baselines = " ".join(f"{c}={v}" for c, v in config.BASELINES.items())
    script = (f'COMPONENTS="{" ".join(config.COMPONENTS)}"\nBASELINES="{baselines}"\n' + SEED_SCRIPT)
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


def health(address: str, port: int, timeout: float = 1.0) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/health", timeout=timeout) as response:
            return json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None


def wait_healthy(host: config.Host, deadline: float) -> None:
    """Every component on `host` answers /health with its baseline version."""
    for component, version in config.BASELINES.items():
        while True:
            body = health(host.address, PORTS[component])
            if body and body.get("version") == version and body.get("status") == "ok":
                break
            if time.monotonic() > deadline:
                raise LabError(f"{host.name}: {component} not healthy at baseline {version} (last: {body})")
            time.sleep(0.05)


def reset(hosts: list[config.Host]) -> None:
    """Seed (or re-seed) `hosts` to the baseline, all in parallel; waits until healthy."""
    data = bundle()
    with timed(f"reset {len(hosts)} hosts"), ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        list(pool.map(lambda h: seed_host(h, data), hosts))
        deadline = time.monotonic() + 20
        list(pool.map(lambda h: wait_healthy(h, deadline), hosts))
    log("baseline: " + ", ".join(f"{c} {v}" for c, v in config.BASELINES.items())
        + " on " + " ".join(h.name for h in hosts))
