"""The transport seam on a real host: argv in, exit code and output out, quoted once; timeouts; files."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from upgrader.engine.endpoints import Pool, endpoints
from upgrader.loading.inputs import load_inventory
from upgrader.transport.base import Timeouts, Transport


@pytest.fixture
def host(vm_inventory: Path, vm_hosts: list[str]) -> Iterator[Transport]:
    inv = load_inventory(vm_inventory)
    pool = Pool(endpoints(inv.model, inv.path), timeouts=Timeouts.for_options(3.0, None))
    try:
        yield pool[vm_hosts[0]]
    finally:
        pool.close()


def test_run_returns_exit_code_and_both_streams(host: Transport) -> None:
    res = host.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (res.exit_code, res.stdout, res.stderr, res.timed_out) == (3, "out\n", "err\n", False)
    assert not res.ok


def test_arguments_reach_the_host_literally(host: Transport) -> None:
    hostile = ["$(touch /tmp/pwned)", "; reboot", "a b\tc", "'\"", "*", "--", "\\n"]
    res = host.run(["printf", "%s\\n", *hostile])
    assert res.ok and res.stdout.splitlines() == hostile
    assert host.run(["test", "-e", "/tmp/pwned"]).exit_code == 1


def test_sudo_runs_as_root(host: Transport) -> None:
    assert host.run(["id", "-u"], sudo=True).stdout.strip() == "0"


def test_a_command_that_overruns_is_a_timed_out_result_within_its_timeout(host: Transport) -> None:
    started = time.monotonic()
    res = host.run(["sleep", "30"], timeout=1)
    assert res.timed_out and not res.ok
    assert time.monotonic() - started < 10


def test_put_and_get_round_trip_a_file(host: Transport, tmp_path: Path) -> None:
    src = tmp_path / "payload.bin"
    src.write_bytes(bytes(range(256)) * 512)
    remote = f"/tmp/upgrader-transport-{time.monotonic_ns()}.bin"
    host.put(src, remote)
    try:
        back = tmp_path / "back.bin"
        host.get(remote, back)
        assert back.read_bytes() == src.read_bytes()
    finally:
        host.run(["rm", "-f", remote])


def test_a_stream_answers_line_by_line_until_it_ends(host: Transport) -> None:
    stream = host.stream(["sh", "-c", "while read -r line; do echo \"got $line\"; echo END $?; done"])
    try:
        for word in ("one", "two words"):
            res = stream.exchange(word, until="END ", timeout=5)
            assert res.ok and res.stdout == f"got {word}\nEND 0\n"
        assert stream.exchange(None, until="END ", timeout=0.5).timed_out, "no line sent: nothing comes back"
        assert not stream.alive, "a timed-out stream is closed, never reused"
    finally:
        stream.close()
