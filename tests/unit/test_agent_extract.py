"""The host agent's tarball extraction, run here on real files: hostile archives are refused whole."""

from __future__ import annotations

import importlib.util
import io
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.reliability(
    "hostile tarball: refused whole on the host, nothing unpacked")

AGENT = Path(__file__).resolve().parents[2] / "upgrader" / "agent" / "agent.py"


@pytest.fixture(scope="module")
def agent() -> ModuleType:
    spec = importlib.util.spec_from_file_location("upgrader_agent_under_test", AGENT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tarball(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
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


GOOD = [file("bin/app", b"#!/bin/sh\n"), file("release.json", b"{}"),
        special("bin/link", tarfile.SYMTYPE, linkname="app"), special("lib", tarfile.DIRTYPE)]


def test_a_well_formed_release_is_unpacked(agent: ModuleType, tmp_path: Path) -> None:
    dest = tmp_path / "releases" / "1.0"
    (tmp_path / "releases").mkdir()
    agent.extract_safely(str(tarball(tmp_path / "ok.tgz", GOOD)), str(dest), 0)
    assert (dest / "bin" / "app").read_bytes() == b"#!/bin/sh\n"
    assert (dest / "bin" / "link").is_symlink() and (dest / "lib").is_dir()


@pytest.mark.parametrize(("member", "says"), [
    (file("/etc/evil"), "absolute path"),
    (file("../evil"), "leaves the release"),
    (file("bin/../../evil"), "leaves the release"),
    (special("bin/out", tarfile.SYMTYPE, linkname="/etc/passwd"), "points outside"),
    (special("bin/up", tarfile.SYMTYPE, linkname="../../.."), "points outside"),
    (special("bin/hard", tarfile.LNKTYPE, linkname="../../etc/shadow"), "leaves the release"),
    (special("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0), "device or special"),
    (special("dev/tty", tarfile.CHRTYPE, devmajor=5, devminor=0), "device or special"),
    (special("pipe", tarfile.FIFOTYPE), "device or special"),
])
def test_hostile_members_refuse_the_whole_tarball(agent: ModuleType, tmp_path: Path, member: object,
                                                  says: str) -> None:
    (tmp_path / "releases").mkdir()
    dest = tmp_path / "releases" / "1.0"
    bad = tarball(tmp_path / "bad.tgz", [*GOOD[:2], member])  # type: ignore[list-item]
    with pytest.raises(agent.OpFailed, match=says):
        agent.extract_safely(str(bad), str(dest), 0)
    assert not dest.exists(), "nothing is unpacked from a refused tarball"
    assert not (tmp_path / "evil").exists()


def test_a_huge_member_is_refused_before_anything_is_written(agent: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "releases").mkdir()
    raw = tmp_path / "huge.tar"
    info = tarfile.TarInfo("blob")
    info.size = 5 << 30  # a 5 GiB header; the data is never read
    with raw.open("wb") as fh:
        fh.write(info.tobuf(format=tarfile.GNU_FORMAT))
        fh.truncate(512 + info.size + 1024)  # sparse: a real archive shape without 5 GiB of disk
    with pytest.raises(agent.OpFailed, match="is 5368709120 bytes"):
        agent.extract_safely(str(raw), str(tmp_path / "releases" / "1.0"), 0)
    assert not (tmp_path / "releases" / "1.0").exists()


def test_a_truncated_archive_is_a_clean_refusal(agent: ModuleType, tmp_path: Path) -> None:
    good = tarball(tmp_path / "ok.tgz", GOOD).read_bytes()
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(agent.OpFailed, match="not a readable tarball"):
        agent.extract_safely(str(cut), str(tmp_path / "x"), 0)


def test_strip_components_and_placeholders_are_data(agent: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "releases").mkdir()
    dest = tmp_path / "releases" / "2.0"
    members = [file("app-2.0/bin/app"), file("app-2.0/$(touch pwned)", b"")]
    agent.extract_safely(str(tarball(tmp_path / "s.tgz", members)), str(dest), 1)
    assert (dest / "bin" / "app").exists() and (dest / "$(touch pwned)").exists()
    assert not (tmp_path / "pwned").exists()
