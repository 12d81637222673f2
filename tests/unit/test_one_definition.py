"""One definition of each default and formula (issue 15 §5), held by tests where text must repeat a number."""

from __future__ import annotations

import argparse
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes.scenario import Scenario
from upgrader import scheduling
from upgrader.agent import checks as agent_checks
from upgrader.commands import early, live
from upgrader.commands.inputs import load_inputs
from upgrader.errors import UpgraderError
from upgrader.models.playbook import Check
from upgrader.transport.base import DEFAULTS, PYTHON, Timeouts
from upgrader.windows import localtime

REPO = Path(__file__).resolve().parents[2]


def test_the_documented_probe_interval_is_the_agents() -> None:
    said = f"{agent_checks.FAST_POLL * 1000:g} ms"
    description = Check.model_fields["retries"].description or ""
    assert f"polled every {said}" in description
    assert f"polled every {said}" in (REPO / "schemas" / "playbook.json").read_text()
    readme = re.findall(r"polled every (\d+ ms)", (REPO / "README.md").read_text())
    assert readme and set(readme) == {said}


def test_the_handshake_budget_is_one_formula() -> None:
    assert Timeouts(connect=1, auth=2, channel=3).handshake == 1 * 2 + 2 + 3


def test_the_options_defaults_are_the_transports_defaults() -> None:
    parser = argparse.ArgumentParser()
    live.add_connection_arguments(parser)
    args = parser.parse_args([])
    assert Timeouts.for_options(args.connect_timeout, args.command_timeout) == DEFAULTS
    assert args.python == PYTHON
    started = early._parser().parse_args(["rollback", "app", "-i", "x.yml", "--reason", "r"])
    assert (started.connect_timeout, started.command_timeout, started.python) == (
        args.connect_timeout,
        args.command_timeout,
        args.python,
    )


@pytest.mark.parametrize(
    "name",
    ["America", "Europe", "../../etc/passwd", "/etc/localtime", "", "Mars/Olympus", "UTC\x00", "America/New_York/x"],
)
def test_every_reader_of_a_zone_name_refuses_the_same_bad_ones(name: str) -> None:
    """'America' is a directory of zones: ZoneInfo raises OSError for it, which one copy did not catch."""
    assert localtime.zone(name) is None
    word = re.fullmatch(r"\S+", name) is not None  # what is not one word is refused by the option's form first
    with pytest.raises(UpgraderError, match="unknown timezone" if word else ""):
        scheduling.parse_at(f"Sat 02:00 {name}")
    with pytest.raises(UpgraderError, match="unknown timezone" if word else ""):
        scheduling.parse_on(f"2030-01-05 02:00 {name}")


@given(st.text(max_size=40))
def test_a_zone_name_is_a_zone_or_none_never_an_exception(name: str) -> None:
    found = localtime.zone(name)
    assert found is None or found.utcoffset(dt.datetime(2030, 1, 1)) is not None


def test_a_good_zone_is_found_by_all() -> None:
    assert localtime.zone("America/New_York") is not None
    assert scheduling.parse_at("Sat 02:00 America/New_York").zone == "America/New_York"


# ---------------------------------------------------------------- install roots of `requires` components


@pytest.fixture
def requiring(tmp_path: Path) -> Iterator[Scenario]:
    s = Scenario.build(tmp_path, {"ny": ["ny-1"]}, playbook={"requires": {"risklib": ">=2.0"}})
    yield s
    s.close()


def risklib_playbook(s: Scenario, root: str) -> None:
    book = yaml.safe_load(s.playbook.read_text())
    book.pop("requires")
    book.update(component="risklib", version="2.1.0", upgrade_from=">=2.0,<2.1")
    book["install"] = {"root": root}
    (s.tmp / "risklib.yml").write_text(yaml.safe_dump(book, sort_keys=False))


def test_a_required_component_is_looked_up_under_its_own_playbooks_install_root(requiring: Scenario) -> None:
    risklib_playbook(requiring, "/srv/risklib")
    host = requiring.hosts["ny-1"]
    host.install("/srv/risklib", "2.0.4")
    host.install("/opt/risklib", "1.0.0")  # a stale copy at the standard place: not what the playbook says
    pool = requiring.hosts.pool()
    try:
        facts = live.live_facts(load_inputs(requiring.playbook, requiring.inventory), pool, PYTHON)
    finally:
        pool.close()
    assert facts.hosts["ny-1"].components["risklib"].installed == "2.0.4"


def test_without_its_playbook_the_standard_layout_is_asked(requiring: Scenario) -> None:
    requiring.hosts["ny-1"].install("/opt/risklib", "2.2.0")
    pool = requiring.hosts.pool()
    try:
        facts = live.live_facts(load_inputs(requiring.playbook, requiring.inventory), pool, PYTHON)
    finally:
        pool.close()
    assert facts.hosts["ny-1"].components["risklib"].installed == "2.2.0"
