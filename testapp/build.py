#!/usr/bin/env python3
"""Build the test application's release tarballs into build/artifacts/.

Every tarball is byte-reproducible (sorted members, fixed mtime, uid/gid 0, empty
owner names, gzip header mtime 0), because committed playbooks pin their sha256.
Writes <component>-<version>.tar.gz, a sha256sum-format .sha256 beside each, and
index.json listing them all.

    python testapp/build.py [--out DIR]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from testapp.releases import RELEASES, Release  # noqa: E402

MTIME = 1764028800  # 2025-11-25T00:00:00Z, fixed so rebuilds are byte-identical
DEFAULT_OUT = HERE.parent / "build" / "artifacts"

# Extra members of the deliberately hostile tarballs: (name, type, payload or link target).
HOSTILE_MEMBERS = {
    "traversal": [("../evil", tarfile.REGTYPE, "written outside the release directory\n")],
    "abspath": [("/tmp/evil", tarfile.REGTYPE, "written to an absolute path\n")],
    "symlinkout": [
        ("bin/passwd", tarfile.SYMTYPE, "/etc/passwd"),
        ("escape", tarfile.SYMTYPE, "../../../.."),
        ("escape/tmp/evil", tarfile.REGTYPE, "written through a symlink out of the release\n"),
    ],
}


def member(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644, linkname: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.linkname = linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def members(release: Release) -> list[tuple[tarfile.TarInfo, bytes]]:
    release_json = json.dumps(release.release_json(), indent=2, sort_keys=True) + "\n"
    items = [
        member("bin", tarfile.DIRTYPE, mode=0o755),
        member(f"bin/{release.component}", data=(HERE / "vendorapp.py").read_bytes(), mode=0o755),
        member("bin/migrate-config", data=(HERE / "migrate_config.py").read_bytes(), mode=0o755),
        member("release.json", data=release_json.encode()),
    ]
    for key in release.extra_members:
        for name, kind, payload in HOSTILE_MEMBERS[key]:
            if kind == tarfile.SYMTYPE:
                items.append(member(name, kind, mode=0o777, linkname=payload))
            else:
                items.append(member(name, kind, data=payload.encode()))
    return sorted(items, key=lambda item: item[0].name)


def tarball_bytes(release: Release) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members(release):
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def build(out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    index: list[dict[str, Any]] = []
    for release in RELEASES:
        data = tarball_bytes(release)
        actual = hashlib.sha256(data).hexdigest()
        published = actual
        if release.wrong_published_sha256:
            published = hashlib.sha256(b"not the digest of " + release.filename.encode()).hexdigest()
        write_if_changed(out / release.filename, data)
        write_if_changed(out / (release.filename + ".sha256"), f"{published}  {release.filename}\n".encode())
        index.append(
            {
                "component": release.component,
                "version": release.version,
                "file": release.filename,
                "sha256": published,
                "actual_sha256": actual,
                "size": len(data),
                "behaviour": release.behaviour,
                "config_schema": release.config_schema,
            }
        )
    document = {"generated_by": "testapp/build.py", "artifacts": index}
    write_if_changed(out / "index.json", (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
    wanted = {entry["file"] for entry in index} | {entry["file"] + ".sha256" for entry in index} | {"index.json"}
    for stale in out.iterdir():
        if stale.is_file() and stale.name not in wanted:
            stale.unlink()
    return index


def write_if_changed(path: Path, data: bytes) -> None:
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)


def behaviour_text(behaviour: dict) -> str:
    return ", ".join(k if v is True else f"{k}={v}" for k, v in sorted(behaviour.items()))


def print_table(index: list[dict], out: Path) -> None:
    rows = [("component", "version", "sha256 (published)", "size", "behaviour")]
    for e in index:
        digest = e["sha256"][:16] + ("  (WRONG)" if e["sha256"] != e["actual_sha256"] else "")
        rows.append((e["component"], e["version"], digest, str(e["size"]), behaviour_text(e["behaviour"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * width for width in widths))
    print(f"\n{len(index)} artifacts in {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the test application's release tarballs.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--quiet", action="store_true", help="do not print the table")
    args = parser.parse_args(argv)
    index = build(args.out)
    if not args.quiet:
        print_table(index, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
