"""Config files a migration backs up and a rollback restores."""

from __future__ import annotations

import os

from .errors import OpFailed
from .fs import check_dir, copy_file, read_json, token
from .releases import META, release_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .shapes import Record


def config_path(path: object) -> str | None:
    """A config file the agent backs up and restores: absolute, plain, in a directory only root can write,
    and not itself a symlink (restoring would replace the link, backing up would read elsewhere)."""
    import stat

    path = str(path)
    if not path.startswith("/") or "/../" in path + "/" or "/./" in path + "/" or "//" in path or "\0" in path:
        raise OpFailed(f"config file {path!r} is not a plain absolute path", file=path)
    check_dir(os.path.dirname(path))
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise OpFailed(f"config file {path} is a symlink; name the real file in install.config_files", file=path)
    return path if stat.S_ISREG(st.st_mode) else None


def migration_record(root: str, version: str) -> tuple[str | None, Record | None]:
    """(.upgrader dir, migration.json) of ``version``, or (None, None); raises OpFailed if restoring it
    would write where it must not.  Checked before a rollback stops anything."""
    meta = os.path.join(release_path(root, version), META)
    if not os.path.isdir(meta):
        return None, None
    check_dir(meta)  # what it names is written back as root: only trust it from root's own directory
    info = read_json(os.path.join(meta, "migration.json"))
    if not isinstance(info, dict) or not isinstance(info.get("files", []), list):
        return None, None
    for path in info.get("files", []):
        config_path(path)
    return meta, info


def restore_config(root: str, version: str) -> list[str]:
    """Undo the migration that was run when switching to ``version``; returns files restored."""
    meta, info = migration_record(root, version)
    if meta is None or info is None:
        return []
    backup = os.path.join(meta, "config-before")
    restored = []
    for path in info.get("files", []):
        src = backup + path
        if os.path.isfile(src):
            tmp = f"{path}.upgrader-restore-{token()}"
            copy_file(src, tmp)
            os.replace(tmp, path)
            restored.append(path)
    os.unlink(os.path.join(meta, "migration.json"))
    return restored
