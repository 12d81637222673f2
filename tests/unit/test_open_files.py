"""RLIMIT_NOFILE check before a run: raise the soft limit when the hard one allows, else refuse.

The decision is checked on a faked getrlimit/setrlimit (any soft/hard pair, hypothesis), and for
real in child processes whose limits are lowered first (lowering needs no privilege).
"""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upgrader.engine import open_files, pool
from upgrader.errors import RefusedError
from upgrader.transport.base import Endpoint

REPO = Path(__file__).resolve().parents[2]


class FakeLimits:
    def __init__(self, soft: int, hard: int, fail: bool = False) -> None:
        self.soft, self.hard, self.fail = soft, hard, fail
        self.set: list[tuple[int, int]] = []

    def getrlimit(self, which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def setrlimit(self, which: int, value: tuple[int, int]) -> None:
        assert which == resource.RLIMIT_NOFILE
        if self.fail:
            raise ValueError("not allowed to raise maximum limit")
        self.set.append(value)
        self.soft, self.hard = value


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeLimits:
    f = FakeLimits(1024, 4096)
    monkeypatch.setattr(resource, "getrlimit", f.getrlimit)
    monkeypatch.setattr(resource, "setrlimit", f.setrlimit)
    return f


def test_formula() -> None:
    # 64 base + 10,000 sockets + 2 jump sockets + 32 workers + 2 journal files
    assert open_files.needed(10_000, 2, 32) == 64 + 10_000 + 2 + 32 + 2
    assert open_files.needed(4, 0, 32) == 64 + 4 + 0 + 4 + 2  # never more workers than hosts


def test_enough_already_changes_nothing(fake: FakeLimits) -> None:
    checked = open_files.ensure(100, 2, 32)
    assert (checked.soft, checked.raised, fake.set) == (1024, False, [])


def test_short_soft_limit_is_raised_to_what_is_needed(fake: FakeLimits) -> None:
    checked = open_files.ensure(3000, 2, 32)
    need = open_files.needed(3000, 2, 32)
    assert fake.set == [(need, 4096)]
    assert (checked.soft_before, checked.soft, checked.hard, checked.raised) == (1024, need, 4096, True)


def test_short_hard_limit_refuses_naming_numbers_and_fixes(fake: FakeLimits) -> None:
    with pytest.raises(RefusedError) as err:
        open_files.ensure(10_000, 2, 32)
    need = open_files.needed(10_000, 2, 32)
    text = str(err.value)
    for expected in (
        f"need {need} open files",
        "1024 (soft limit)",
        "4096 (hard limit)",
        f"ulimit -n {need}",
        f"LimitNOFILE={need}",
        "--parallel",
        "--limit",
        "nothing was contacted",
    ):
        assert expected in text
    assert fake.set == []


def test_a_failing_raise_is_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    f = FakeLimits(1024, 1 << 30, fail=True)  # the hard limit is above fs.nr_open, say
    monkeypatch.setattr(resource, "getrlimit", f.getrlimit)
    monkeypatch.setattr(resource, "setrlimit", f.setrlimit)
    with pytest.raises(RefusedError, match="raising it failed"):
        open_files.ensure(5000, 0, 32)


def test_unlimited_soft_limit_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    f = FakeLimits(resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    monkeypatch.setattr(resource, "getrlimit", f.getrlimit)
    monkeypatch.setattr(resource, "setrlimit", f.setrlimit)
    assert not open_files.ensure(1_000_000, 100, 32).raised and f.set == []


@given(
    hosts=st.integers(0, 200_000),
    jumps=st.integers(0, 50),
    parallel=st.integers(1, 1000),
    soft=st.integers(0, 300_000),
    extra=st.integers(0, 300_000),
)
def test_never_short_never_above_hard_never_lowered(
    hosts: int, jumps: int, parallel: int, soft: int, extra: int
) -> None:
    f = FakeLimits(soft, soft + extra)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(resource, "getrlimit", f.getrlimit)
        mp.setattr(resource, "setrlimit", f.setrlimit)
        need = open_files.needed(hosts, jumps, parallel)
        try:
            checked = open_files.ensure(hosts, jumps, parallel)
        except RefusedError:
            assert soft + extra < need and f.set == []  # refused only when even the hard limit is short
            return
    assert f.soft >= need and f.soft >= soft and f.soft <= soft + extra and f.hard == soft + extra
    assert checked.soft == f.soft


def test_jump_hosts_are_counted_once_each(fake: FakeLimits) -> None:
    jumps = [Endpoint(name=f"dc{i}-jump", address=f"192.0.2.{i}") for i in (1, 2)]
    hosts = [Endpoint(name=f"h{i}", address=f"198.51.100.{i}", jump=jumps[i % 2]) for i in range(1, 11)]
    hosts.append(Endpoint(name="direct", address="198.51.100.200"))
    assert open_files.for_endpoints(hosts, 4).needed == open_files.needed(11, 2, 4)


def _child(code: str, soft: int, hard: int) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a python whose RLIMIT_NOFILE was lowered to (soft, hard) first, for real."""
    prelude = f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, cwd=REPO, timeout=60
    )


def test_real_soft_limit_is_raised_within_the_hard_limit() -> None:
    child = _child(
        """
        import resource
        from upgrader.engine import open_files
        c = open_files.ensure(300, 2, 32)
        print(c.needed, c.soft, *resource.getrlimit(resource.RLIMIT_NOFILE))
        """,
        soft=128,
        hard=1024,
    )
    need = open_files.needed(300, 2, 32)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == [str(need), str(need), str(need), "1024"]


def test_real_hard_limit_refuses() -> None:
    child = _child(
        """
        from upgrader.engine import open_files
        open_files.ensure(1000, 2, 32)
        """,
        soft=128,
        hard=512,
    )
    assert child.returncode != 0 and "RefusedError" in child.stderr and "512 (hard limit)" in child.stderr


def test_cli_refuses_before_contacting_any_host(tmp_path: Path) -> None:
    """`upgrader facts` on 600 hosts under a hard limit of 256: exit 1, the numbers, no connection made.

    The addresses are TEST-NET-2 and benchmarking ones: nothing may answer there, and a connection
    attempt would show as an unreachable host rather than this refusal.
    """
    lines = [
        "name: many",
        "defaults:",
        "  user: ops",
        "roles:",
        "  oe: [riskgw]",
        "datacenters:",
        "  ny5:",
        "    timezone: America/New_York",
        "    markets: [XNYS]",
        "    hosts:",
    ]
    for i in range(600):
        lines += [f"      h{i}:", f"        address: 198.18.{i // 200}.{i % 200 + 1}", "        roles: [oe]"]
    inventory = tmp_path / "many.yml"
    inventory.write_text("\n".join(lines) + "\n")
    child = _child(
        f"""
        import sys
        from upgrader.cli.main import main
        sys.exit(main(["--state-dir", {str(tmp_path / "state")!r}, "facts", "playbooks/riskgw-2.5.0.yml",
                       "-i", {str(inventory)!r}, "--parallel", "8"]))
        """,
        soft=256,
        hard=256,
    )
    need = open_files.needed(600, 0, 8)
    assert child.returncode == 1, child.stderr
    assert f"need {need} open files" in child.stderr and "256 (hard limit)" in child.stderr
    assert "unreachable" not in child.stdout + child.stderr


def test_background_work_runs_everything_on_at_most_the_workers_given() -> None:
    import threading
    import time

    seen: list[int] = []
    running = [0, 0]  # now, peak
    lock = threading.Lock()

    def fn(i: int) -> None:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.002)
        with lock:
            running[0] -= 1
            seen.append(i)
        if i == 7:
            raise RuntimeError("one item failing ends only that item")

    before = threading.active_count()
    threads = pool.in_background(fn, range(300), 8, "t")
    assert len(threads) == 8 and threading.active_count() <= before + 8
    for t in threads:
        t.join(10)
    assert sorted(seen) == list(range(300)) and running[1] <= 8
    assert pool.in_background(fn, [], 8, "t") == []


def test_a_phase_takes_datacenters_in_turn_so_one_gate_cannot_hold_every_worker() -> None:
    from upgrader.engine.apply import _by_turns

    hosts = ["a1", "a2", "a3", "b1", "c1", "c2"]
    turns = _by_turns(hosts, lambda h: h[0])
    assert turns == ["a1", "b1", "c1", "a2", "c2", "a3"]
    assert sorted(turns) == sorted(hosts) and _by_turns([], lambda h: h) == []
