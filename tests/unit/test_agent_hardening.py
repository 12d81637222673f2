"""The agent as root among directories and files others may have touched (issue 13 §2), on real files.

Each test plants what an attacker with some write access on a host could plant — a writable
directory, a symlinked root, a symlink at a temporary name, a forged stage marker, a forged compiled
agent — runs the real agent code, and then inspects the filesystem.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.unit import agent_code
from upgrader import agent as agent_pkg

pytestmark = pytest.mark.reliability("planted paths on a host: refused or not followed; nothing written outside")

AGENT = agent_code.AGENT
BOOTSTRAP = Path(agent_pkg.__file__).with_name("bootstrap.py")


@pytest.fixture
def agent(tmp_path: Path) -> ModuleType:
    module = agent_code.load("upgrader_agent_hardening", tmp_path / "state")  # its /var/lib/upgrader, here
    return module


@pytest.fixture
def host(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "opt" / "app"
    (root / "releases" / "1.0").mkdir(parents=True)
    (root / "current").symlink_to("releases/1.0")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary").write_text("canary")
    return {"root": root, "outside": outside, "canary": outside / "canary"}


def ctx(host: dict[str, Path], run: str = "R1") -> dict[str, str]:
    return {"component": "app", "run": run, "root": str(host["root"])}


def artifact(path: Path, files: dict[str, bytes]) -> tuple[Path, str]:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def stage(
    agent: ModuleType,
    host: dict[str, Path],
    tmp_path: Path,
    version: str = "2.0",
    files: dict[str, bytes] | None = None,
    run: str = "R1",
) -> dict[str, object]:
    name = f"upload-{hashlib.sha256(version.encode()).hexdigest()[:8]}.tgz"  # the version may be hostile
    upload, sha = artifact(tmp_path / name, files or {"bin/app": b"#!/bin/sh\n"})
    return agent.op_stage(ctx(host, run), {"version": version, "sha256": sha, "upload": str(upload)})


def assert_untouched(host: dict[str, Path]) -> str:
    """The outside directory holds only its canary, unchanged; returns what was seen, for the reliability row."""
    names = [p.name for p in host["outside"].iterdir()]
    assert names == ["canary"] and host["canary"].read_text() == "canary"
    return f"outside/ holds {names}, canary text {host['canary'].read_text()!r}"


def said(exc: BaseException, tmp: Path) -> str:
    """An error's text for the reliability row, without its fix hint and with the test's directory shortened."""
    return f"{type(exc).__name__}: {exc}".split("; fix:")[0].replace(str(tmp), "…")[:140]


# ------------------------------------------------------------ directories others can write


def test_a_group_writable_releases_dir_is_refused_before_anything_is_written(
    agent, host, tmp_path, record_property
) -> None:  # type: ignore[no-untyped-def]
    releases = host["root"] / "releases"
    releases.chmod(0o775)
    with pytest.raises(
        agent.OpFailed,
        match=rf"{releases}: it is writable by group or others.*"
        rf"fix: chown root:root {releases} && chmod go-w {releases}",
    ) as refused:
        stage(agent, host, tmp_path)
    inside = sorted(p.name for p in releases.iterdir())
    assert inside == ["1.0"], "no staging directory was made"
    assert not (tmp_path / "state" / "app" / "staged.json").exists()
    uploads = list(tmp_path.glob("upload-*.tgz"))
    assert len(uploads) == 1, "not even the upload was touched"
    record_property(
        "observed", f"{said(refused.value, tmp_path)}; releases/ holds {inside}, {len(uploads)} upload kept"
    )


def test_a_symlinked_install_root_is_refused(agent, host, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    real = tmp_path / "elsewhere"
    host["root"].rename(real)
    host["root"].symlink_to(real)
    with pytest.raises(agent.OpFailed, match=rf"{host['root']}: it is a symlink") as switch:
        agent.op_switch(ctx(host), {"version": "1.0"})
    with pytest.raises(agent.OpFailed, match="it is a symlink"):
        stage(agent, host, tmp_path)
    inside = sorted(p.name for p in (real / "releases").iterdir())
    assert inside == ["1.0"]
    record_property("observed", f"switch and stage refused: {said(switch.value, tmp_path)}; real releases/ {inside}")


def test_an_install_root_owned_by_someone_else_is_refused(agent, host, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    os.chown(host["root"].parent, 65534, 65534)
    with pytest.raises(agent.OpFailed, match=rf"{host['root'].parent}: it is owned by uid 65534") as refused:
        agent.op_switch(ctx(host), {"version": "1.0"})
    link = os.readlink(host["root"] / "current")
    record_property("observed", f"{said(refused.value, tmp_path)}; current still -> {link}")


def test_a_world_writable_state_dir_is_refused(agent, host, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    state.mkdir(mode=0o777)
    state.chmod(0o777)
    with pytest.raises(agent.OpFailed, match=rf"{state}: it is writable by group or others") as refused:
        agent.op_lock(ctx(host), {"mode": "acquire"})
    inside = list(state.iterdir())
    assert inside == []
    record_property("observed", f"{said(refused.value, tmp_path)}; state/ holds {len(inside)} entries (no lock)")


def test_a_group_writable_config_dir_is_refused_and_the_migration_not_run(
    agent, host, tmp_path, record_property
) -> None:  # type: ignore[no-untyped-def]
    etc = tmp_path / "etc" / "app"
    etc.mkdir(parents=True)
    (etc / "app.conf").write_text("schema 1\n")
    etc.chmod(0o770)
    ran = tmp_path / "ran"
    with pytest.raises(agent.OpFailed, match=rf"{etc}: it is writable by group or others") as refused:
        agent.op_migrate(ctx(host), {"version": "1.0", "files": [str(etc / "app.conf")], "argv": ["touch", str(ran)]})
    assert not ran.exists() and (etc / "app.conf").read_text() == "schema 1\n"
    record_property(
        "observed",
        f"{said(refused.value, tmp_path)}; migration ran: {ran.exists()}; app.conf {(etc / 'app.conf').read_text()!r}",
    )


def test_a_symlinked_config_file_is_refused(agent, host, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "app.conf").symlink_to(host["canary"])
    with pytest.raises(agent.OpFailed, match="is a symlink; name the real file") as refused:
        agent.op_migrate(ctx(host), {"version": "1.0", "files": [str(etc / "app.conf")], "argv": ["true"]})
    record_property("observed", f"{said(refused.value, tmp_path)}; {assert_untouched(host)}")


# ------------------------------------------------------------ symlinks at temporary names


def test_no_temporary_name_can_be_predicted_and_redirected(agent, host, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    """Plant a symlink to the canary at every name the agent used to write through (…-PID), then let it
    do the writes: switch (flip's link), lock (.new file), journal's state files, migrate and restore."""
    pid = os.getpid()
    root, state = host["root"], tmp_path / "state" / "app"
    state.mkdir(parents=True, mode=0o700)
    (root / "releases" / "2.0").mkdir()
    etc = tmp_path / "etc"
    etc.mkdir()
    conf = etc / "app.conf"
    conf.write_text("schema 1\n")
    planted = [
        root / f".current.tmp-{pid}",
        state / f"lock.json.new-{pid}",
        state / f"lock.json.tmp-{pid}",
        state / f"lock.json.new-{pid}.tmp-{pid}",
        etc / "app.conf.upgrader-restore",
        root / "releases" / "2.0" / ".upgrader" / f"previous.json.tmp-{pid}",
    ]
    (root / "releases" / "2.0" / ".upgrader").mkdir(mode=0o700)
    for link in planted:
        link.symlink_to(host["canary"])
    agent.op_lock(ctx(host), {"mode": "acquire"})
    agent.op_switch(ctx(host), {"version": "2.0"})
    agent.op_migrate(
        ctx(host), {"version": "2.0", "files": [str(conf)], "argv": ["sh", "-c", f"echo schema 2 > {conf}"]}
    )
    assert conf.read_text() == "schema 2\n"
    assert agent.restore_config(str(root), "2.0") == [str(conf)]
    assert conf.read_text() == "schema 1\n" and not conf.is_symlink()
    assert os.readlink(root / "current") == "releases/2.0"
    outside = assert_untouched(host)
    links = sum(p.is_symlink() for p in planted)
    assert links == len(planted), "planted links are left alone, not written through"
    record_property(
        "observed",
        f"lock, switch, migrate and restore done (current -> {os.readlink(root / 'current')}); "
        f"{links} of {len(planted)} planted links still links; {outside}",
    )


def test_a_symlink_as_the_uploaded_artifact_is_not_followed(agent, host, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret"
    secret.write_bytes(b"root's secret")
    upload = tmp_path / "upload.tgz"
    upload.symlink_to(secret)
    sha = hashlib.sha256(secret.read_bytes()).hexdigest()
    with pytest.raises(agent.OpFailed, match="cannot read uploaded artifact") as refused:
        agent.op_stage(ctx(host), {"version": "2.0", "sha256": sha, "upload": str(upload)})
    incoming = list((tmp_path / "state" / "app" / "incoming").iterdir())
    assert not incoming
    record_property("observed", f"{said(refused.value, tmp_path)}; incoming/ holds {len(incoming)} file(s)")


def test_carry_over_never_writes_through_a_link_the_new_release_has(agent, host, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    releases = host["root"] / "releases"
    (releases / "1.0" / "data").mkdir()
    (releases / "1.0" / "data" / "seq.db").write_text("42")
    (releases / "2.0").mkdir()
    (releases / "2.0" / "data").symlink_to(host["outside"])
    with pytest.raises(OSError) as through:
        agent.op_carry_over(ctx(host), {"from": "1.0", "version": "2.0", "files": ["data/seq.db"]})
    (releases / "1.0" / "evil").symlink_to(host["canary"])
    with pytest.raises(agent.OpFailed, match=r"carry_over file .* not a plain path"):
        agent.op_carry_over(ctx(host), {"from": "1.0", "version": "2.0", "files": ["../1.0/x"]})
    with pytest.raises(OSError) as source:  # a symlinked source is not read either (O_NOFOLLOW: ELOOP)
        agent.op_carry_over(ctx(host), {"from": "1.0", "version": "2.0", "files": ["evil"]})
    record_property(
        "observed",
        f"linked target: {type(through.value).__name__} errno {through.value.errno}; '../1.0/x' refused; linked "
        f"source: {type(source.value).__name__} errno {source.value.errno}; {assert_untouched(host)}",
    )


def test_a_version_that_is_not_one_directory_name_is_refused(agent, host, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    refused = []
    for bad in ("../../outside", ".", "a/b", ".hidden"):
        with pytest.raises(agent.OpFailed, match="cannot be a release directory name"):
            stage(agent, host, tmp_path, version=bad)
        refused.append(bad)
    record_property("observed", f"{len(refused)} versions refused {refused}; {assert_untouched(host)}")


# ------------------------------------------------------------ only the agent's own stage marker counts


def test_a_planted_marker_beside_someone_elses_files_does_not_count(agent, host, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    upload, sha = artifact(tmp_path / "real.tgz", {"bin/app": b"the vendor's\n"})
    planted = host["root"] / "releases" / "2.0"
    (planted / ".upgrader").mkdir(parents=True)
    (planted / "bin").mkdir()
    (planted / "bin" / "app").write_text("someone else's\n")
    (planted / ".upgrader" / "release.json").write_text(f'{{"version": "2.0", "sha256": "{sha}", "run": "R1"}}')
    facts = agent.op_facts(ctx(host), {})
    assert facts["staged"] == ["1.0", "2.0"] and facts["staged_sha"] == {"1.0": None, "2.0": None}
    out = agent.op_stage(ctx(host), {"version": "2.0", "sha256": sha, "upload": str(upload)})
    assert out == {"staged": "2.0"}, "staged again, not skipped"
    assert (planted / "bin" / "app").read_text() == "the vendor's\n"
    assert agent.op_facts(ctx(host), {})["staged_sha"]["2.0"] == sha
    record_property(
        "observed",
        f"planted 2.0 counted with sha {facts['staged_sha']['2.0']}; stage answered {out}; "
        f"bin/app now {(planted / 'bin' / 'app').read_text()!r}",
    )


def test_a_directory_swapped_in_after_staging_does_not_count(agent, host, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    stage(agent, host, tmp_path)
    releases = host["root"] / "releases"
    assert agent.op_facts(ctx(host), {})["staged_sha"]["2.0"]
    (releases / "2.0").rename(releases / "kept")
    (releases / "2.0").mkdir()
    swapped = agent.op_facts(ctx(host), {})["staged_sha"]["2.0"]
    assert swapped is None
    again = stage(agent, host, tmp_path)
    assert again == {"staged": "2.0"}
    third = stage(agent, host, tmp_path)
    assert third["skipped"] is True, "what it staged itself counts"
    record_property(
        "observed",
        f"swapped-in 2.0 counted with sha {swapped}; staged again: {again}; then skipped: {third['skipped']}",
    )


def test_unstage_removes_only_what_this_run_staged(agent, host, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    stage(agent, host, tmp_path, run="R1")
    other = agent.op_unstage(ctx(host, "R2"), {"version": "2.0"})
    assert other == {"removed": False}
    own = agent.op_unstage(ctx(host, "R1"), {"version": "2.0"})
    assert own == {"removed": True}
    assert not (host["root"] / "releases" / "2.0").exists()
    assert agent.staged_registry("app") == {}
    record_property(
        "observed",
        f"run R2 unstaging R1's 2.0: {other}; R1: {own}; 2.0 exists: {(host['root'] / 'releases' / '2.0').exists()}",
    )


# ------------------------------------------------------------ the compiled-agent cache


@pytest.fixture
def bootstrap(tmp_path: Path) -> dict[str, object]:
    """bootstrap.py's functions, without its last line (which would load and run an agent)."""
    source = BOOTSTRAP.read_text()
    body, last = source.rstrip().rsplit("\n", 1)
    assert last == "exec(_load())"
    ns: dict[str, object] = {"__name__": "bootstrap_under_test"}
    exec(compile(body, str(BOOTSTRAP), "exec"), ns)
    cache = tmp_path / "var-lib-upgrader" / ".agent"
    ns["CACHE"] = str(cache)
    return ns


def _packed(text: str) -> str:
    import base64
    import zlib

    return base64.b64encode(zlib.compress(text.encode(), 9)).decode()


def test_the_bootstrap_key_is_the_controllers_source_digest(bootstrap, record_property) -> None:  # type: ignore[no-untyped-def]
    digest = bootstrap["_digest"](agent_pkg.packed_source())
    assert digest == agent_pkg.source_key()
    record_property("observed", f"bootstrap digest {digest[:16]}… equals the controller's source key")


def test_a_cached_agent_is_used_only_for_the_source_sent_in_this_run(bootstrap, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    sent = _packed("RESULT = 'sent'\n")
    key = bootstrap["_digest"](sent)
    code = bootstrap["_agent_code"](key, sent)  # compiled and cached
    cached = Path(bootstrap["CACHE"]) / f"{key}.{sys.implementation.cache_tag}"
    assert cached.exists()
    import marshal

    forged = compile("RESULT = 'forged'\n", "x", "exec")
    cached.write_bytes(key.encode() + b"\n" + marshal.dumps(forged))  # as if the cache were tampered with
    ns: dict[str, str] = {}
    exec(bootstrap["_agent_code"](key, sent), ns)
    forged_ran = ns["RESULT"]
    assert forged_ran == "forged", "(the cache is trusted when it is root's and keyed by the sent digest)"
    other = _packed("RESULT = 'other'\n")
    ns = {}
    exec(bootstrap["_agent_code"](key, other), ns)  # a key that is not the digest of what was sent
    assert ns["RESULT"] == "other", "the cache entry must not stand in for different source"
    from_other = ns["RESULT"]
    exec(code, ns)
    assert ns["RESULT"] == "sent"
    record_property(
        "observed", f"same key, same source: cache ran ({forged_ran!r}); same key, other source ran {from_other!r}"
    )


def test_a_cache_in_a_writable_or_symlinked_directory_is_not_used(bootstrap, tmp_path, record_property) -> None:  # type: ignore[no-untyped-def]
    import marshal

    sent = _packed("RESULT = 'sent'\n")
    key = bootstrap["_digest"](sent)
    cache = Path(bootstrap["CACHE"])
    cache.mkdir(parents=True, mode=0o700)
    entry = cache / f"{key}.{sys.implementation.cache_tag}"
    entry.write_bytes(key.encode() + b"\n" + marshal.dumps(compile("RESULT = 'forged'\n", "x", "exec")))
    entry.chmod(0o600)
    cache.parent.chmod(0o777)  # someone else could have swapped .agent/
    ns: dict[str, str] = {}
    exec(bootstrap["_agent_code"](key, sent), ns)
    writable = ns["RESULT"]
    assert writable == "sent"
    cache.parent.chmod(0o700)
    real = tmp_path / "real-cache"
    cache.rename(real)
    cache.symlink_to(real)
    ns = {}
    exec(bootstrap["_agent_code"](key, sent), ns)
    assert ns["RESULT"] == "sent"
    record_property(
        "observed", f"forged cache entry; parent 0777: ran {writable!r}; .agent/ a symlink: ran {ns['RESULT']!r}"
    )


def test_a_rollback_that_would_restore_into_a_writable_dir_refuses_before_stopping(
    agent, host, tmp_path, record_property
) -> None:  # type: ignore[no-untyped-def]
    etc = tmp_path / "etc"
    etc.mkdir()
    conf = etc / "app.conf"
    conf.write_text("schema 1\n")
    (host["root"] / "releases" / "2.0").mkdir()
    agent.op_switch(ctx(host), {"version": "2.0"})
    agent.op_migrate(ctx(host), {"version": "2.0", "files": [str(conf)], "argv": ["true"]})
    etc.chmod(0o777)  # since the migration, someone opened the config directory up
    stopped = tmp_path / "stopped"
    service = {"start": ["true"], "stop": ["touch", str(stopped)], "status": ["true"]}
    with pytest.raises(agent.OpFailed, match=rf"{etc}: it is writable by group or others") as refused:
        agent.op_rollback(ctx(host), {"to": "1.0", "service": service, "checks": []})
    assert not stopped.exists(), "refused before the service was stopped"
    assert os.readlink(host["root"] / "current") == "releases/2.0"
    record_property(
        "observed",
        f"{said(refused.value, tmp_path)}; stop ran: {stopped.exists()}; current -> "
        f"{os.readlink(host['root'] / 'current')}",
    )
