"""Small pure helpers that read the playbook model for the planner."""

from __future__ import annotations

from upgrader import versions
from upgrader.models.playbook import Artifact, Migration, Playbook
from upgrader.planning.paths import PathGraph, Release


def graph_of(playbook: Playbook) -> PathGraph:
    scheme = playbook.version_scheme
    target = Release(versions.parse(playbook.version, scheme), versions.spec(playbook.upgrade_from, scheme))
    hops = [Release(versions.parse(h.version, scheme), versions.spec(h.upgrade_from, scheme)) for h in playbook.via]
    return PathGraph(target, hops)


# Releases are named by their literal versions (versions.py): equal only if written the same.
def artifact_for(playbook: Playbook, version: str) -> Artifact:
    if version == playbook.version:
        return playbook.artifact
    return next(h.artifact for h in playbook.via if h.version == version)


def migration_for(playbook: Playbook, version: str) -> Migration | None:
    if version == playbook.version:
        return playbook.migrate
    return next(h.migrate for h in playbook.via if h.version == version)
