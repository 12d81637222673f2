"""The host agent's tarball extraction, run here on real files: hostile archives are refused whole."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import pytest

from tests.unit import agent_code

pytestmark = pytest.mark.reliability("hostile tarball: refused whole on the host, nothing unpacked")


@pytest.fixture(scope="module")
def agent() -> ModuleType:
    return agent_code.load("upgrader_agent_under_test")


def tarball(path: Path, members: Sequence[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o755
    return info, data


def special(name: str, kind: bytes, **attrs: object) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, None


GOOD = [
    file("bin/app", b"#!/bin/sh\n"),
    file("release.json", b"{}"),
    special("bin/link", tarfile.SYMTYPE, linkname="app"),
    special("lib", tarfile.DIRTYPE),
]


def test_a_well_formed_release_is_unpacked(
    agent: ModuleType, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    record_property("expected", "a well formed release: unpacked in full, its symlink and directory kept")
    dest = tmp_path / "releases" / "1.0"
    (tmp_path / "releases").mkdir()
    agent.extract_safely(str(tarball(tmp_path / "ok.tgz", GOOD)), str(dest), 0)
    assert (dest / "bin" / "app").read_bytes() == b"#!/bin/sh\n"
    assert (dest / "bin" / "link").is_symlink() and (dest / "lib").is_dir()
    written = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    record_property("observed", f"unpacked {len(written)} paths: {', '.join(written)}")


@pytest.mark.parametrize(
    ("member", "says"),
    [
        (file("/etc/evil"), "absolute path"),
        (file("../evil"), "leaves the release"),
        (file("bin/../../evil"), "leaves the release"),
        (special("bin/out", tarfile.SYMTYPE, linkname="/etc/passwd"), "points outside"),
        (special("bin/up", tarfile.SYMTYPE, linkname="../../.."), "points outside"),
        (special("bin/hard", tarfile.LNKTYPE, linkname="../../etc/shadow"), "leaves the release"),
        (special("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0), "device or special"),
        (special("dev/tty", tarfile.CHRTYPE, devmajor=5, devminor=0), "device or special"),
        (special("pipe", tarfile.FIFOTYPE), "device or special"),
    ],
)
def test_hostile_members_refuse_the_whole_tarball(
    agent: ModuleType, tmp_path: Path, member: object, says: str, record_property: Callable[[str, object], None]
) -> None:
    (tmp_path / "releases").mkdir()
    dest = tmp_path / "releases" / "1.0"
    bad = tarball(tmp_path / "bad.tgz", [*GOOD[:2], member])  # type: ignore[list-item]
    with pytest.raises(agent.OpFailed, match=says) as refused:
        agent.extract_safely(str(bad), str(dest), 0)
    assert not dest.exists(), "nothing is unpacked from a refused tarball"
    assert not (tmp_path / "evil").exists()
    record_property("observed", f"refused: {refused.value}; {dest.name}/ not created")


def test_a_huge_member_is_refused_before_anything_is_written(
    agent: ModuleType, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    (tmp_path / "releases").mkdir()
    raw = tmp_path / "huge.tar"
    info = tarfile.TarInfo("blob")
    info.size = 5 << 30  # a 5 GiB header; the data is never read
    with raw.open("wb") as fh:
        fh.write(info.tobuf(format=tarfile.GNU_FORMAT))
        fh.truncate(512 + info.size + 1024)  # sparse: a real archive shape without 5 GiB of disk
    with pytest.raises(agent.OpFailed, match="is 5368709120 bytes") as huge:
        agent.extract_safely(str(raw), str(tmp_path / "releases" / "1.0"), 0)
    assert not (tmp_path / "releases" / "1.0").exists()
    left = list((tmp_path / "releases").iterdir())
    record_property("observed", f"refused: {huge.value}; {len(left)} path(s) written under releases/")


def test_a_truncated_archive_is_a_clean_refusal(
    agent: ModuleType, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    good = tarball(tmp_path / "ok.tgz", GOOD).read_bytes()
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(agent.OpFailed, match="not a readable tarball") as clean:
        agent.extract_safely(str(cut), str(tmp_path / "x"), 0)
    record_property(
        "observed",
        f"{len(good) // 2} of {len(good)} bytes: {type(clean.value).__name__}: {clean.value}; "
        f"x/ exists: {(tmp_path / 'x').exists()}",
    )


def test_strip_components_and_placeholders_are_data(
    agent: ModuleType, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    (tmp_path / "releases").mkdir()
    dest = tmp_path / "releases" / "2.0"
    members = [file("app-2.0/bin/app"), file("app-2.0/$(touch pwned)", b"")]
    agent.extract_safely(str(tarball(tmp_path / "s.tgz", members)), str(dest), 1)
    assert (dest / "bin" / "app").exists() and (dest / "$(touch pwned)").exists()
    assert not (tmp_path / "pwned").exists()
    written = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    record_property("observed", f"unpacked {written}; pwned created: {(tmp_path / 'pwned').exists()}")


def sym(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    return special(name, tarfile.SYMTYPE, linkname=target)


def hard(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    return special(name, tarfile.LNKTYPE, linkname=target)


def refused(agent: ModuleType, tmp_path: Path, members: list, says: str, strip: int = 0) -> str:
    """The tarball is refused with ``says``; the sandbox (releases/ and an outside canary) is as it was.

    Returns what was seen, for the reliability row: the refusal and what the sandbox holds after it.
    """
    releases = tmp_path / "releases"
    releases.mkdir(exist_ok=True)
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "canary").write_text("canary")
    archive = tarball(tmp_path / "bad.tgz", members)
    with pytest.raises(agent.OpFailed, match=says) as refusal:
        agent.extract_safely(str(archive), str(releases / "1.0"), strip)
    left = list(releases.iterdir())
    assert left == [], "nothing is left behind"
    beside = [p.name for p in outside.iterdir()]
    assert beside == ["canary"] and (outside / "canary").read_text() == "canary"
    return f"refused: {str(refusal.value)[:120]}; releases/ holds {len(left)}, outside/ holds {beside} unchanged"


# Chains where each link alone looks inside, yet writing through them leaves the release.
@pytest.mark.parametrize(
    ("members", "says"),
    [
        ([sym("a", "."), file("a/x")], "beneath symlink"),
        ([sym("a", "."), sym("a/b", ".."), file("a/b/outside/x")], "beneath symlink"),
        ([special("a", tarfile.DIRTYPE), sym("a/b", ".."), sym("c", "a/b/.."), file("c/outside/x")], "points outside"),
        ([special("a", tarfile.DIRTYPE), sym("a/b", ".."), sym("c", "a/b/..")], "points outside"),
        ([sym("up", "x/../.."), file("keep")], "points outside"),
        ([sym("loop1", "loop2"), sym("loop2", "loop1")], "points outside"),
        ([file("a/x"), sym("a", "/tmp")], "beneath symlink|points outside"),  # link after what it would shadow
        ([file("f"), file("f/x")], "beneath file"),
        ([file("f", b"one"), file("f", b"two")], "appears twice"),
        ([sym("s", "t"), file("s")], "appears twice"),
    ],
)
def test_symlink_chains_are_refused_whole(
    agent: ModuleType, tmp_path: Path, members: list, says: str, record_property: Callable[[str, object], None]
) -> None:
    record_property("observed", refused(agent, tmp_path, members, says))


@pytest.mark.parametrize(
    ("members", "says"),
    [
        ([hard("h", "/etc/passwd")], "absolute path"),
        ([hard("h", "../outside/canary")], "leaves the release"),
        ([hard("h", "nothing-like-it")], "not to a regular file earlier"),
        ([hard("h", "later"), file("later")], "not to a regular file earlier"),
        ([sym("s", "f"), file("f"), hard("h", "s")], "not to a regular file earlier"),
        ([special("d", tarfile.DIRTYPE), hard("h", "d")], "not to a regular file earlier"),
        ([sym("s", "."), hard("h", "s/f")], "not to a regular file earlier|beneath symlink"),
    ],
)
def test_hardlinks_only_to_files_this_archive_made(
    agent: ModuleType, tmp_path: Path, members: list, says: str, record_property: Callable[[str, object], None]
) -> None:
    record_property("observed", refused(agent, tmp_path, members, says))


@pytest.mark.parametrize(
    ("members", "strip"),
    [
        ([file(".upgrader/release.json", b'{"sha256": "x"}')], 0),
        ([file("./.upgrader/release.json")], 0),
        ([file("x/.upgrader/previous.json")], 1),
        ([special(".upgrader", tarfile.DIRTYPE)], 0),
        ([sym(".upgrader", "/etc")], 0),
        ([file(".UPGRADER/release.json")], 0),
        ([sym("meta", ".upgrader"), file("keep")], 0),
        ([special("d", tarfile.DIRTYPE), sym("d/m", "../.upgrader/config-before")], 0),
    ],
)
def test_the_engines_metadata_cannot_come_from_a_tarball(
    agent: ModuleType, tmp_path: Path, members: list, strip: int, record_property: Callable[[str, object], None]
) -> None:
    record_property("observed", refused(agent, tmp_path, members, r"\.upgrader", strip))


def test_a_name_with_dotdot_is_refused_even_when_it_resolves_inside(
    agent: ModuleType, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    inside = refused(agent, tmp_path, [file("x/../.upgrader/release.json")], "leaves the release")
    stripped = refused(agent, tmp_path, [file("app-1/../../x")], "leaves the release", strip=1)
    record_property("observed", f"x/../.upgrader: {inside}; and app-1/../../x, strip 1: {stripped.split(';')[0]}")


def test_too_many_members_are_refused(
    agent: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_property: Callable[[str, object], None]
) -> None:
    monkeypatch.setattr(agent, "MAX_MEMBERS", 3)
    record_property("observed", refused(agent, tmp_path, [file(f"f{i}") for i in range(4)], "more than 3 members"))


def test_modes_are_at_most_rwxr_xr_x_and_links_are_made(
    agent: ModuleType, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    (tmp_path / "releases").mkdir()
    dest = tmp_path / "releases" / "1.0"
    suid, _ = file("bin/suid", b"#!/bin/sh\n")
    suid.mode = 0o6777
    members = [
        (suid, b"#!/bin/sh\n"),
        special("etc", tarfile.DIRTYPE, mode=0o777),
        hard("bin/again", "bin/suid"),
        sym("etc/up", "../bin"),
        sym("here", "."),
    ]
    agent.extract_safely(str(tarball(tmp_path / "ok.tgz", members)), str(dest), 0)
    modes = {name: (dest / name).stat().st_mode & 0o7777 for name in ("bin/suid", "etc")}
    assert modes == {"bin/suid": 0o755, "etc": 0o755}
    assert (dest / "bin" / "again").stat().st_ino == (dest / "bin" / "suid").stat().st_ino
    links = {name: str((dest / name).readlink()) for name in ("etc/up", "here")}
    assert links == {"etc/up": "../bin", "here": "."}
    record_property(
        "observed",
        f"0o6777 file -> {oct(modes['bin/suid'])}, 0o777 dir -> {oct(modes['etc'])}; "
        f"hard link shares inode: {(dest / 'bin' / 'again').samefile(dest / 'bin' / 'suid')}; symlinks {links}",
    )


def test_an_existing_destination_is_never_written_into(
    agent: ModuleType, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    dest = tmp_path / "releases" / "1.0"
    dest.mkdir(parents=True)
    with pytest.raises(FileExistsError) as exists:
        agent.extract_safely(str(tarball(tmp_path / "ok.tgz", GOOD)), str(dest), 0)
    inside = list(dest.iterdir())
    assert inside == []
    record_property("observed", f"{type(exists.value).__name__}; existing 1.0/ still holds {len(inside)} entries")


def test_a_write_that_fails_midway_leaves_nothing(
    agent: ModuleType, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    (tmp_path / "releases").mkdir()
    dest = tmp_path / "releases" / "1.0"
    members = [file("a"), file("b" * 300)]  # a name longer than the filesystem allows: fails while writing
    with pytest.raises(OSError) as failed:
        agent.extract_safely(str(tarball(tmp_path / "long.tgz", members)), str(dest), 0)
    assert not dest.exists()
    left = [p.name for p in (tmp_path / "releases").iterdir()]
    record_property("observed", f"{type(failed.value).__name__} (errno {failed.value.errno}); releases/ holds {left}")
