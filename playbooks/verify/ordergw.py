"""Verification of an ordergw host after an upgrade, as the desk's own pytest-testinfra tests.

Run by upgrader's `testinfra` check (playbooks/ordergw-5.2.0.yml) against each host, through the
same SSH endpoint and jump host as the upgrade; UPGRADER_VERSION is the release that should run.
Run it by hand with:  UPGRADER_VERSION=5.2.0 pytest playbooks/verify/ordergw.py --hosts=ssh://HOST
"""

import json
import os

VERSION = os.environ.get("UPGRADER_VERSION", "")
ROOT = "/opt/ordergw"


def test_the_service_runs_and_is_enabled(host):
    service = host.service("ordergw")
    assert service.is_running, "ordergw.service is not running"
    assert service.is_enabled, "ordergw.service would not start at boot"


def test_current_points_at_the_release(host):
    current = host.file(f"{ROOT}/current")
    assert current.is_symlink
    assert current.linked_to == f"{ROOT}/releases/{VERSION}", f"current -> {current.linked_to}"


def test_the_release_is_roots_and_not_writable_by_others(host):
    release = host.file(f"{ROOT}/releases/{VERSION}")
    assert release.user == "root" and not release.mode & 0o022, f"{release.path}: {release.user} {oct(release.mode)}"


def test_it_listens_and_reports_this_version(host):
    fetch = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9102/health', timeout=2).read().decode())"
    health = json.loads(host.check_output("python3 -c %s", fetch))
    assert health["version"] == VERSION, f"reports {health['version']}"
