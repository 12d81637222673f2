"""`validate`: an artifact that is in the store but is not the release the playbook names is a located problem.

`apply` refuses such an artifact before touching a host (engine/apply.py ``check_artifacts``); this
catches it earlier, in review and CI, at the playbook line that holds the digest.  An artifact not in
the store yet is not a problem here (it is fetched before the run).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from upgrader.errors import Problem
from upgrader.loading.inputs import Loaded
from upgrader.models.playbook import Artifact, Playbook

CHUNK = 1 << 20


def store_of(option: Path | None) -> Path:
    """The artifact store `apply` would use: --artifacts, else $UPGRADER_ARTIFACTS, else build/artifacts."""
    return Path(option or os.environ.get("UPGRADER_ARTIFACTS") or "build/artifacts")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def store_problems(playbook: Loaded[Playbook], store: Path) -> list[Problem]:
    """One problem per release whose artifact file is in ``store`` with another sha256 than the playbook's."""
    spec = playbook.model
    releases: list[tuple[tuple[str | int, ...], str, Artifact]] = [(("artifact",), spec.version, spec.artifact)]
    releases += [(("via", i, "artifact"), hop.version, hop.artifact) for i, hop in enumerate(spec.via)]
    problems = []
    for where, version, art in releases:
        path = store / art.file if art.file else None
        if path is None or not path.is_file():
            continue
        digest = sha256_of(path)
        if digest != art.sha256.lower():
            problems.append(
                Problem(
                    playbook.at(*where, "sha256"),
                    f"{spec.component} {version}: {path} has sha256 {digest}, not {art.sha256}",
                    "the file in the store is not the reviewed release: fetch it again, or correct "
                    "the digest from the vendor's published one",
                )
            )
    return problems
