"""Finding a component's playbook (for its layout, service and checks) by name."""

from __future__ import annotations

from pathlib import Path

from upgrader import versions
from upgrader.errors import InputError, RefusedError
from upgrader.loading.inputs import Loaded, load_playbook
from upgrader.models.playbook import Playbook


def install_root(component: str, directory: Path) -> str:
    """Where ``component`` is installed: its own playbook's install.root (the newest in ``directory``), else
    the standard layout /opt/<component> when it has no playbook there."""
    try:
        return find_playbook(component, directory).model.install.root
    except RefusedError:
        return f"/opt/{component}"


def find_playbook(component: str, directory: Path) -> Loaded[Playbook]:
    """The newest valid playbook for ``component`` in ``directory``."""
    found: list[Loaded[Playbook]] = []
    for path in sorted(directory.glob("*.y*ml")) if directory.is_dir() else []:
        try:
            loaded = load_playbook(path)
        except InputError:
            continue  # `validate` reports those; here we only need one good description
        if loaded.model.component == component:
            found.append(loaded)
    if not found:
        raise RefusedError(
            f"no playbook for component '{component}' in {directory}",
            "name one with --playbook FILE (it supplies the layout, service and checks)",
        )
    return max(found, key=lambda p: versions.parse(p.model.version, p.model.version_scheme).key())
