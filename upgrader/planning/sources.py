"""Small pure helpers that read the playbook model for the planner."""

from __future__ import annotations

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from upgrader.models.playbook import Artifact, Migration, Playbook
from upgrader.planning.paths import PathGraph, Release


def graph_of(playbook: Playbook) -> PathGraph:
    target = Release(Version(playbook.version), SpecifierSet(playbook.upgrade_from))
    hops = [Release(Version(h.version), SpecifierSet(h.upgrade_from)) for h in playbook.via]
    return PathGraph(target, hops)


def artifact_for(playbook: Playbook, version: str) -> Artifact:
    if Version(version) == Version(playbook.version):
        return playbook.artifact
    return next(h.artifact for h in playbook.via if Version(h.version) == Version(version))


def migration_for(playbook: Playbook, version: str) -> Migration | None:
    if Version(version) == Version(playbook.version):
        return playbook.migrate
    return next(h.migrate for h in playbook.via if Version(h.version) == Version(version))
