"""Every sha256 a committed playbook pins is the digest of the tarball testapp/build.py builds now.

build/artifacts/ may be left over from an earlier checkout, so this builds in memory: a change to
testapp/ (a reformat of vendorapp.py is enough) without re-pinning fails here, not on the lab.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from testapp.build import tarball_bytes
from testapp.releases import RELEASES
from tests.unit.conftest import REPO


def pins(node: Any) -> Iterator[tuple[str, str]]:
    """(artifact file, pinned sha256) for every artifact mapping anywhere in a loaded playbook."""
    if isinstance(node, dict):
        if isinstance(node.get("file"), str) and isinstance(node.get("sha256"), str):
            yield Path(node["file"]).name, node["sha256"]
        for value in node.values():
            yield from pins(value)
    elif isinstance(node, list):
        for value in node:
            yield from pins(value)


def test_every_committed_pin_is_the_digest_of_a_fresh_build() -> None:
    built = {release.filename: hashlib.sha256(tarball_bytes(release)).hexdigest() for release in RELEASES}
    playbooks = sorted((REPO / "playbooks").glob("*.yml")) + sorted((REPO / "lab" / "playbooks").glob("*.yml"))
    checked = []
    wrong = []
    for path in playbooks:
        for artifact, sha in pins(yaml.safe_load(path.read_text())):
            if artifact not in built:
                continue
            checked.append(artifact)
            if built[artifact] != sha:
                wrong.append(
                    f"{path.relative_to(REPO)}: {artifact} pins {sha[:16]}, a build gives {built[artifact][:16]}"
                )
    assert wrong == [], "re-pin after changing testapp/:\n" + "\n".join(wrong)
    # The shipped playbooks pin five of the built tarballs: a parser that finds none would pass vacuously.
    assert len(checked) >= 5, checked
