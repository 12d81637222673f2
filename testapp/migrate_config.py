#!/usr/bin/python3
"""migrate-config CONFIG: bring a component's config to the schema this release needs.

Rewrites CONFIG in place (atomically, keeping its mode) when [app] schema is older than
the release's config_schema; does nothing when it is already there. Idempotent.
"""

from __future__ import annotations

import configparser
import json
import os
import sys
import tempfile
from pathlib import Path

RELEASE_FILE = Path(__file__).resolve().parent.parent / "release.json"


def migrate(conf: configparser.ConfigParser, release: dict) -> bool:
    """Apply the release's migration to conf. Returns True if conf changed."""
    target = int(release.get("config_schema", 1))
    current = conf.getint("app", "schema", fallback=1)
    if current >= target:
        return False
    for section, values in release.get("migration", {}).get("add", {}).items():
        if not conf.has_section(section):
            conf.add_section(section)
        for key, value in values.items():
            if not conf.has_option(section, key):
                conf.set(section, key, str(value))
    conf.set("app", "schema", str(target))
    return True


def write_atomically(path: Path, conf: configparser.ConfigParser) -> None:
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".")
    with os.fdopen(fd, "w") as fh:
        conf.write(fh)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: migrate-config CONFIG", file=sys.stderr)
        return 2
    release = json.loads(RELEASE_FILE.read_text())
    name = f"{release['component']} {release['version']}"
    if release.get("behaviour", {}).get("migrate_fail"):
        print(f"migrate-config ({name}): error: cannot parse [risk] limits table at line 7", file=sys.stderr)
        return 1
    path = Path(argv[0])
    conf = configparser.ConfigParser()
    if not conf.read(path):
        print(f"migrate-config ({name}): cannot read {path}", file=sys.stderr)
        return 1
    before = conf.getint("app", "schema", fallback=1)
    if migrate(conf, release):
        write_atomically(path, conf)
        print(f"migrate-config ({name}): {path}: schema {before} -> {conf.get('app', 'schema')}")
    else:
        print(f"migrate-config ({name}): {path}: schema {before} is current, nothing to do")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
