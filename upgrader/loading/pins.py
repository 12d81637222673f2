"""The files a run reads on the controller, pinned by sha256, and the check that they have not changed.

A testinfra check runs a Python module on the controller, with the operator's SSH keys.  Its code is
not only the module: pytest puts the module's import root on ``sys.path`` (the module's directory,
or the directory above its topmost package when the directory has an ``__init__.py``) and imports
the packages on the way, so every file Python could import from that root is code of the check.
The plan records each one (``Plan.controller_files``); `apply plan.json` calls ``check`` before
anything connects and refuses a plan whose files changed, were removed or were added, naming them.

What is pinned: every file with an import suffix (``.py``, ``.pyc``, extension modules) under the
import root, through directories whose names Python can import (identifiers), ``__pycache__``
excepted: the runner gives Python a private bytecode cache (engine/testinfra_check.py), so a
cached file in the tree is never read.  Files the module opens itself (data files) are not
imported and not pinned: keep them inside the module, or in the playbook, which is pinned.

Other controller-side inputs are pinned elsewhere: the playbook and the inventory by their sha256
(``Plan.playbook``, ``Plan.inventory``), each artifact by the sha256 the playbook gives it, which
the agent checks.  Migrations, service commands and checks run on the hosts, from the plan's argv.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import os
from pathlib import Path

from upgrader.errors import RefusedError
from upgrader.models.plan import ControllerFile, Plan
from upgrader.models.playbook import Playbook

MAX_FILES = 2000  # under one import root: more is a module placed in a directory that holds something else
_SUFFIXES = tuple(sorted(set(importlib.machinery.all_suffixes())))
_SKIPPED_DIRS = frozenset({"__pycache__"})


def controller_files(playbook: Playbook, playbook_dir: Path) -> list[ControllerFile]:
    """Every file the playbook's testinfra checks can import, with its sha256; paths relative to ``playbook_dir``.

    Sorted by path, each once (the first check that reads it names it): the same files give the same list.
    """
    found: dict[str, ControllerFile] = {}
    for check in playbook.checks:
        if check.testinfra is None:
            continue
        module = playbook_dir / check.testinfra.file
        root = import_root(module)
        if not root.resolve().is_relative_to(playbook_dir.resolve()):
            raise RefusedError(
                f"testinfra module {check.testinfra.file}: pytest would import it from {root}, above "
                f"the playbook's directory (a package up to there)",
                "keep the module's packages inside the playbook's directory",
            )
        for path in [module, *_importable(root)]:
            name = Path(os.path.relpath(path, playbook_dir)).as_posix()
            if name not in found:
                found[name] = ControllerFile(path=name, sha256=_sha256(path, name), used_by=f"check {check.name}")
    return [found[name] for name in sorted(found)]


def import_root(module: Path) -> Path:
    """The directory pytest puts on sys.path for ``module``: the first one upwards that is not a package."""
    root = module.parent
    while (root / "__init__.py").is_file() and root.parent != root:
        root = root.parent
    return root


def _importable(root: Path) -> list[Path]:
    files: list[Path] = []
    seen: set[str] = set()  # real paths: Python imports through a linked directory, so it is walked (once)
    for top, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if d.isidentifier() and d not in _SKIPPED_DIRS)
        files += [Path(top) / n for n in sorted(names) if n.endswith(_SUFFIXES)]
        if len(files) > MAX_FILES:
            raise RefusedError(
                f"the testinfra import root {root} holds more than {MAX_FILES} importable files",
                "put the testinfra module (and what it imports) in a directory of its own",
            )
    return files


def _sha256(path: Path, name: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise RefusedError(
            f"cannot read {name}, a file the testinfra check imports: {exc.strerror or exc}",
            "make it readable, or remove it from the module's directory",
        ) from None
    return "sha256:" + digest.hexdigest()


def check(plan: Plan, playbook: Playbook, playbook_dir: Path, where: str) -> None:
    """Refuse ``plan`` (named ``where``) unless the controller files are the very ones it pinned.

    Called before anything connects: a changed module must not run, and nothing else should start either.
    """
    now = {f.path: f.sha256 for f in controller_files(playbook, playbook_dir)}
    pinned = {f.path: f.sha256 for f in plan.controller_files}
    changed = sorted(p for p in pinned.keys() & now.keys() if pinned[p] != now[p])
    gone = sorted(pinned.keys() - now.keys())
    added = sorted(now.keys() - pinned.keys())
    if not (changed or gone or added):
        return
    what = [f"{p} changed (pinned {pinned[p][:19]}…, now {now[p][:19]}…)" for p in changed]
    what += [f"{p} is gone" for p in gone] + [f"{p} is new (the check could import it)" for p in added]
    raise RefusedError(
        f"{where}: controller file {'; '.join(what)} since the plan was reviewed; nothing was contacted",
        "review the change, then plan again and have the new plan reviewed",
    )
