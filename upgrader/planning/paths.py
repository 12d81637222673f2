"""The vendor's upgrade-path graph: which releases a host may step through.

Each release (the target and every ``via`` hop) says which installed versions
may upgrade to it directly.  A host's path is the shortest chain of releases,
always moving to a newer version, that ends at the target.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from upgrader.versions import SchemeVersion as Version
from upgrader.versions import Spec


@dataclass(frozen=True)
class Release:
    version: Version
    upgrade_from: Spec

    def accepts(self, installed: Version) -> bool:
        return self.upgrade_from.contains(installed)


@dataclass(frozen=True)
class GraphIssue:
    """A defect in the graph; ``index`` is the hop's position in ``via`` (None for the target)."""

    index: int | None
    message: str
    hint: str


class PathGraph:
    def __init__(self, target: Release, hops: list[Release]) -> None:
        self.target = target
        self.hops = hops
        # Deterministic order: oldest release first.
        self._releases = sorted([*hops, target], key=lambda r: r.version)

    def path_from(self, installed: Version) -> list[Version] | None:
        """Versions to install in order (ending at the target), [] if already there, None if no path."""
        if installed == self.target.version:
            return []
        previous: dict[Version, Version | None] = {installed: None}
        queue: deque[Version] = deque([installed])
        while queue:
            here = queue.popleft()
            for release in self._releases:
                step = release.version
                if step <= here or step in previous or not release.accepts(here):
                    continue
                previous[step] = here
                if step == self.target.version:
                    return _unwind(previous, step)
                queue.append(step)
        return None

    def issues(self) -> list[GraphIssue]:
        """Duplicate hops, hops at or past the target, downgrade edges (cycles) and dead ends."""
        found: list[GraphIssue] = []
        seen: dict[Version, int] = {}
        for i, hop in enumerate(self.hops):
            if hop.version in seen:
                found.append(GraphIssue(i, f"hop {hop.version} is listed twice", "remove the duplicate"))
            seen[hop.version] = i
            if hop.version >= self.target.version:
                found.append(
                    GraphIssue(
                        i,
                        f"hop {hop.version} is not older than the target {self.target.version}",
                        "list only intermediate releases under 'via'",
                    )
                )
        everything = [*self.hops, self.target]
        for i, release in enumerate(everything):
            index = i if i < len(self.hops) else None
            if release.accepts(release.version):
                found.append(
                    GraphIssue(
                        index,
                        f"{release.version} may upgrade from itself (a cycle)",
                        "its upgrade_from must exclude its own version",
                    )
                )
            for other in everything:
                if other.version > release.version and release.accepts(other.version):
                    found.append(
                        GraphIssue(
                            index,
                            f"{release.version} accepts the newer {other.version}: a downgrade edge makes a cycle",
                            f"narrow upgrade_from, e.g. '<{release.version}'",
                        )
                    )
        for i, hop in enumerate(self.hops):
            if hop.version < self.target.version and self.path_from(hop.version) is None:
                found.append(
                    GraphIssue(
                        i,
                        f"hop {hop.version} is a dead end: the target {self.target.version} cannot be reached from it",
                        "add a hop that accepts it, or widen the target's upgrade_from",
                    )
                )
        return found


def _unwind(previous: dict[Version, Version | None], last: Version) -> list[Version]:
    chain: list[Version] = []
    node: Version | None = last
    while previous[node] is not None:  # type: ignore[index]
        chain.append(node)  # type: ignore[arg-type]
        node = previous[node]  # type: ignore[index]
    return list(reversed(chain))
