"""What is observed on hosts: installed and staged releases, service state, locks."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from upgrader.models.types import Name, Strict, VersionStr


class ComponentFacts(Strict):
    installed: VersionStr | None = Field(None, description="release the `current` symlink points to")
    staged: list[VersionStr] = Field(default_factory=list, description="releases present under releases/")
    reported_version: str | None = Field(None, description="what the running service says it is")
    service: str | None = Field(None, description="active, inactive, failed, … (systemd words)")
    lock: dict[str, Any] | None = None


class HostFacts(Strict):
    reachable: bool = True
    error: str | None = None
    free_disk_mb: int | None = None
    components: dict[Name, ComponentFacts] = Field(default_factory=dict)


class Facts(Strict):
    """A snapshot of hosts; ``inventory`` names the inventory it was gathered from."""

    inventory: Name
    hosts: dict[Name, HostFacts] = Field(default_factory=dict)
