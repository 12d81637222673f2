"""The upgrade-path graph: shortest chain of releases, always upward; defects reported, not guessed around."""

from __future__ import annotations

from upgrader.planning.paths import PathGraph, Release
from upgrader.versions import parse, spec


def graph(target: str, accepts: str, *hops: tuple[str, str]) -> PathGraph:
    release = Release(parse(target), spec(accepts))
    return PathGraph(release, [Release(parse(v), spec(s)) for v, s in hops])


def path(g: PathGraph, installed: str) -> list[str] | None:
    found = g.path_from(parse(installed))
    return None if found is None else [str(v) for v in found]


def test_direct_upgrade() -> None:
    assert path(graph("5.2.0", ">=5.1,<5.2"), "5.1.4") == ["5.2.0"]


def test_already_on_target_is_an_empty_path() -> None:
    assert path(graph("5.2.0", ">=5.1,<5.2"), "5.2.0") == []


def test_multi_hop() -> None:
    g = graph("5.2.0", ">=5.1,<5.2", ("5.1.0", ">=5.0,<5.1"))
    assert path(g, "5.0.0") == ["5.1.0", "5.2.0"]
    assert path(g, "5.0.9") == ["5.1.0", "5.2.0"]


def test_no_path() -> None:
    g = graph("5.2.0", ">=5.1,<5.2", ("5.1.0", ">=5.0,<5.1"))
    assert path(g, "4.9.0") is None
    assert path(g, "5.3.0") is None


def test_shortest_path_wins() -> None:
    # 4.2 may step 4.3 → 4.4 → 5.0, or jump 4.2 → 4.4 directly.
    g = graph("5.0.0", ">=4.4,<5.0", ("4.3.0", ">=4.2,<4.3"), ("4.4.0", ">=4.2,<4.4"))
    assert path(g, "4.2.0") == ["4.4.0", "5.0.0"]
    assert path(g, "4.3.0") == ["4.4.0", "5.0.0"]


def test_order_of_hops_in_the_file_does_not_matter() -> None:
    hops = [("4.3.0", ">=4.2,<4.3"), ("4.4.0", ">=4.2,<4.4")]
    assert (
        path(graph("5.0.0", ">=4.3,<5.0", *hops), "4.2.0")
        == path(graph("5.0.0", ">=4.3,<5.0", *hops[::-1]), "4.2.0")
        == ["4.3.0", "5.0.0"]
    )


def test_never_steps_down_even_if_a_release_accepts_it() -> None:
    # 4.1.0 accepts 4.4 (a downgrade edge): from 4.0 the path goes up through 4.4, never back to 4.1.
    g = graph("5.0.0", ">=4.4,<5.0", ("4.1.0", ">=4.4,<4.5"), ("4.4.0", ">=4.0,<4.4"))
    assert path(g, "4.0.0") == ["4.4.0", "5.0.0"]
    assert path(g, "4.4.2") == ["5.0.0"]
    assert [(i.index, i.message) for i in g.issues() if "downgrade" in i.message] == [
        (0, "4.1.0 accepts the newer 4.4.0: a downgrade edge makes a cycle")
    ]


def test_prereleases_are_accepted_as_sources() -> None:
    assert path(graph("5.2.0", ">=5.1,<5.2"), "5.1.1rc1") == ["5.2.0"]


def test_clean_graph_has_no_issues() -> None:
    assert graph("5.2.0", ">=5.1,<5.2", ("5.1.0", ">=5.0,<5.1")).issues() == []


def test_self_loop_is_a_cycle() -> None:
    issues = graph("5.2.0", ">=5.1").issues()
    assert [(i.index, i.message) for i in issues] == [(None, "5.2.0 may upgrade from itself (a cycle)")]


def test_dead_end_hop() -> None:
    issues = graph("5.2.0", ">=5.1.5,<5.2", ("5.1.0", ">=5.0,<5.1")).issues()
    assert [(i.index, i.message) for i in issues] == [
        (0, "hop 5.1.0 is a dead end: the target 5.2.0 cannot be reached from it")
    ]


def test_duplicate_and_too_new_hops() -> None:
    issues = graph(
        "5.2.0", ">=5.1,<5.2", ("5.1.0", ">=5.0,<5.1"), ("5.1.0", ">=5.0,<5.1"), ("5.3.0", ">=5.2,<5.3")
    ).issues()
    messages = [i.message for i in issues]
    assert "hop 5.1.0 is listed twice" in messages
    assert "hop 5.3.0 is not older than the target 5.2.0" in messages
