"""The demo that lab/demo.sh runs once the lab is up (real upgrade steps to come)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab import config, control  # noqa: E402


def upgrader_command() -> str | None:
    local = Path(sys.executable).parent / "upgrader"
    return str(local) if local.exists() else shutil.which("upgrader")


def main() -> int:
    print(f"--- {config.INVENTORY.relative_to(REPO)}")
    print(config.INVENTORY.read_text())
    upgrader = upgrader_command()
    playbook = REPO / "playbooks" / "feedhandler-3.1.0.yml"
    if upgrader and playbook.exists():
        argv = [upgrader, "plan", str(playbook.relative_to(REPO)), "-i", str(config.INVENTORY.relative_to(REPO))]
        print("--- " + " ".join(argv[1:]))
        return subprocess.run(argv, cwd=REPO, check=False).returncode
    print("--- lab status (no `upgrader` command or playbook yet)")
    control.status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
