"""`plan` exits 1 when the plan has problems, with offline facts as with live ones, and its help says so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.fakes.scenario import Scenario
from upgrader.cli.main import main


@pytest.mark.reliability(
    "plan --offline of an inventory with a host whose version is unknown",
    "exit 1 (the plan has problems), as with live facts; --help says the same",
)
def test_a_plan_with_problems_exits_1_offline_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], record_property: Callable[[str, str], None]
) -> None:
    s = Scenario.build(tmp_path, {"ny": ["ny-1", "ny-2"]})
    s.close()
    argv = ["--state-dir", str(tmp_path / "state"), "plan", str(s.playbook), "-i", str(s.inventory), "--offline"]
    clean = main(argv)
    inventory = yaml.safe_load(s.inventory.read_text())
    del inventory["datacenters"]["ny"]["hosts"]["ny-2"]["installed"]
    s.inventory.write_text(yaml.safe_dump(inventory, sort_keys=False))
    capsys.readouterr()
    problem = main(argv)
    said = capsys.readouterr().out
    assert (clean, problem) == (0, 1) and "ny-2" in said
    with pytest.raises(SystemExit):
        main(["plan", "--help"])
    helped = " ".join(capsys.readouterr().out.split())
    assert "1 the plan has problems" in helped and "offline alike" in helped
    record_property(
        "observed",
        f"clean plan exit {clean}; with an unknown version exit {problem}; help: "
        f"{helped[helped.index('exit codes') :][:90]!r}",
    )
