"""Version schemes (upgrader/versions.py): literal equality, scheme order, vendor suffixes after the release;
versions read from any output with a pattern (the agent's extract_version)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.fleets import inventory, plan, playbook
from upgrader import versions
from upgrader.agent import checks as agent
from upgrader.cli.main import main
from upgrader.versions import Scheme


def v(text: str, scheme: Scheme = "vendor") -> versions.SchemeVersion:
    return versions.parse(text, scheme)


def test_a_vendor_build_or_hotfix_sorts_after_its_release_and_before_the_next() -> None:
    ordered = [
        "5.2.0",
        "5.2.0-b9",
        "5.2.0_b10",
        "5.2.0-b123",
        "5.2.0-hotfix1",
        "5.2.0-hotfix2",
        "5.2.1",
        "7.17.2",
        "7.17.2-b123",
        "7.17.10",
    ]
    assert sorted(ordered, key=lambda t: v(t)) == ordered
    assert v("5.2.0_b123") > v("5.2.0")  # pep440 would read it as the pre-release 5.2.0b123, before 5.2.0
    assert versions.parse("5.2.0_b123", "pep440") < versions.parse("5.2.0", "pep440")


def test_equality_is_on_the_literal_in_every_scheme() -> None:
    assert v("5.2.0_b123") != v("5.2.0-b123") and v("5.2.0_b123") == v("5.2.0_b123")
    assert versions.parse("5.2", "pep440") != versions.parse("5.2.0", "pep440")
    assert str(versions.parse("5.2.0-rc1", "pep440")) == "5.2.0-rc1"  # never normalised to 5.2.0rc1


def test_vendor_specifiers_rank_bounds_and_match_literals() -> None:
    spec = versions.spec(">=5.1.0,<5.2.0-hotfix1", "vendor")
    assert [t for t in ["5.0.9", "5.1.0", "5.2.0", "5.2.0_b123", "5.2.0-hotfix1", "5.2.1"] if spec.contains(v(t))] == [
        "5.1.0",
        "5.2.0",
        "5.2.0_b123",
    ]
    assert versions.spec("==5.2.0_b123", "vendor").contains(v("5.2.0_b123"))
    assert not versions.spec("==5.2.0_b123", "vendor").contains(v("5.2.0-b123"))
    with pytest.raises(ValueError, match="no wildcards or ~="):
        versions.spec("~=5.2", "vendor")


@pytest.mark.parametrize("text", ["", "v", "5..2", "-5.2", "5.2.0 b1", "5.2/0", "5.2.0-", "a5.2"])
def test_what_is_not_a_vendor_version(text: str) -> None:
    with pytest.raises(ValueError, match="is not a vendor version"):
        v(text)


release = st.lists(st.integers(0, 30), min_size=1, max_size=4).map(lambda parts: ".".join(map(str, parts)))
suffix = st.from_regex(r"[-_.+~]?(b[0-9]{1,3}|hotfix[0-9]|build\.[0-9]+|[0-9]{1,3}|r[0-9]b[0-9])", fullmatch=True)
vendor_versions = st.builds(lambda r, s: r + s, release, st.just("") | suffix).filter(
    lambda t: versions._VENDOR_RE.fullmatch(t) is not None
)


@given(st.lists(vendor_versions, min_size=3, max_size=3))
def test_the_vendor_order_is_total_and_consistent_with_literal_equality(texts: list[str]) -> None:
    a, b, c = (v(t) for t in texts)
    for x, y in itertools.permutations((a, b, c), 2):
        assert sum((x < y, x == y, x > y)) == 1  # exactly one: total, and == only for the same literal
        assert (x == y) == (str(x) == str(y))
        assert (x <= y) == (x < y or x == y)
    if a < b and b < c:
        assert a < c
    plain = versions.parse(texts[0].split("-")[0].split("_")[0], "vendor")
    if versions._VENDOR_RE.fullmatch(str(plain)) and str(plain) != texts[0] and str(a).startswith(str(plain) + "-"):
        assert plain < a  # a suffix sorts after its plain release


@given(
    st.lists(
        st.from_regex(r"[0-9]{1,2}(\.[0-9]{1,2}){0,2}((a|b|rc)[0-9])?(\.post[0-9])?", fullmatch=True),
        min_size=2,
        max_size=2,
    )
)
def test_the_pep440_order_is_total_and_consistent_with_literal_equality(texts: list[str]) -> None:
    x, y = (versions.parse(t, "pep440") for t in texts)
    assert sum((x < y, x == y, x > y)) == 1 and (x == y) == (texts[0] == texts[1])


@pytest.mark.parametrize(
    ("pattern", "output", "found"),
    [
        (r"^v?(\S+) ", "v2.10.2 h1:g/gTYjRqW2i9XbqEZAb0VqYzVBQm0wYQ==\n", "2.10.2"),
        (r"version (\S+)", "ordergw (Acme)\nversion 7.17.2-b123 built 2026-11-02\n", "7.17.2-b123"),
        (r"[0-9]+\.[0-9]+\.[0-9]+_b[0-9]+", '{"build": "5.2.0_b123"}', "5.2.0_b123"),  # no group: the whole match
        (r"^release=(\S+)$", "name=x\nrelease=5.2.0-hotfix1\n", "5.2.0-hotfix1"),  # ^ and $ at each line
        (r"(v)?(\d+\.\d+)", "5.2", "5.2"),  # the first group took no part: the whole match
        (r"version (\S+)", "no such thing", None),
    ],
)
def test_the_agent_extracts_the_version_from_any_output(pattern: str, output: str, found: str | None) -> None:
    assert agent.extract_version(pattern, output) == found


def test_a_pattern_check_compares_what_it_found_with_the_literal_expected(tmp_path: Path) -> None:
    script = tmp_path / "app"
    script.write_text("#!/bin/sh\necho 'app v5.2.0_b123 (linux/amd64)'\n")
    script.chmod(0o755)
    check: dict[str, Any] = {
        "kind": "version",
        "timeout": 5,
        "version": {"argv": [str(script)], "pattern": r"app v(\S+) "},
    }
    assert agent.check_once(check, {"expect_version": "5.2.0_b123"}) is None
    assert agent.check_once(check, {"expect_version": "5.2.0b123"}) == (
        "reports version '5.2.0_b123', expected '5.2.0b123'"
    )  # never a normalised form
    missing = dict(check, version={"argv": [str(script)], "pattern": r"release (\S+)"})
    assert "no version found: pattern" in str(agent.check_once(missing, {"expect_version": "5.2.0_b123"}))


def test_a_vendor_playbook_plans_with_its_literal_versions() -> None:
    pb = playbook(
        version_scheme="vendor",
        version="5.2.0_b123",
        upgrade_from=">=5.1.0,<5.2.0_b123",
        artifact={"file": "app-5.2.0_b123.tar.gz", "sha256": "b" * 64},
    )
    inv = inventory({"ny": ["a1", "a2", "a3"]})
    hosts = {"a1": "5.2.0", "a2": "5.2.0-hotfix1", "a3": "5.2.0_b123"}
    inv = inv.model_copy(
        update={
            "datacenters": {
                "ny": inv.datacenters["ny"].model_copy(
                    update={
                        "hosts": {
                            h: host.model_copy(update={"installed": {"app": hosts[h]}})
                            for h, host in inv.datacenters["ny"].hosts.items()
                        }
                    }
                )
            }
        }
    )
    p = plan(pb, inv)
    assert p.target_version == "5.2.0_b123"
    assert [(h.host, h.from_version, h.path) for h in p.hosts] == [("a1", "5.2.0", ["5.2.0_b123"])]
    assert {s.host: s.reason for s in p.skipped} == {
        "a2": "on 5.2.0-hotfix1, newer than 5.2.0_b123 (use `upgrader rollback` to go back)",
        "a3": "already on 5.2.0_b123",
    }
    switch = next(s for s in p.hosts[0].steps if s.action == "switch")
    assert switch.op["version"] == "5.2.0_b123"  # the release directory is named as written


def test_validation_names_the_line_of_a_version_outside_the_scheme(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = Path(__file__).parent / "inputs"
    text = (inputs / "playbook.yml").read_text()
    (in_tmp / "playbook.yml").write_text(text.replace('version: "5.2.0"', 'version: "5.2.0-hotfix1"'))
    (in_tmp / "inventory.yml").write_text((inputs / "inventory.yml").read_text())
    assert main(["--state-dir", str(in_tmp / "state"), "validate", "playbook.yml", "-i", "inventory.yml"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error[bad-input]: playbook.yml:4:10: version: '5.2.0-hotfix1' is not a PEP 440 version"), err
    assert "set version_scheme: vendor" in err
    (in_tmp / "playbook.yml").write_text(
        text.replace('version: "5.2.0"', 'version_scheme: vendor\nversion: "5.2.0-hotfix1"').replace(
            "5.2.0.tar.gz", "5.2.0-hotfix1.tgz"
        )
    )
    assert main(["--state-dir", str(in_tmp / "state"), "validate", "playbook.yml", "-i", "inventory.yml"]) == 0


def test_a_bad_version_pattern_is_refused_with_its_line(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = Path(__file__).parent / "inputs"
    text = (
        (inputs / "playbook.yml")
        .read_text()
        .replace(
            '    http: {url: "http://127.0.0.1:9102/health"}\n',
            '    http: {url: "http://127.0.0.1:9102/health"}\n  - name: version\n'
            '    version: {argv: [/opt/ordergw/current/bin/ordergw, --version], pattern: "v(\\\\S+"}\n',
        )
    )
    (in_tmp / "playbook.yml").write_text(text)
    (in_tmp / "inventory.yml").write_text((inputs / "inventory.yml").read_text())
    assert main(["--state-dir", str(in_tmp / "state"), "validate", "playbook.yml", "-i", "inventory.yml"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error[bad-input]: playbook.yml:26:") and "is not a valid regular expression" in err
