"""A datacenter worker runs as many host programs at once as its --parallel, not as many as Python's default
executor has threads (min(32, CPUs + 4): 6 on the lab machine's 2 cores).

The activities run their blocking host programs through ``asyncio.to_thread`` (activities.beating), i.e. the
loop's default executor; bench/scale.py --engine on 256 real hosts found a 127-host wave taking 34 s under
Temporal against 12 s locally, the host ends evenly spaced: 6 at a time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from upgrader.temporal.worker import activity_pollers, executor_threads, size_executor

AT_ONCE = 40  # more than the default executor's threads on any machine up to 36 CPUs


def _all_at_once(n: int, sized: bool) -> bool:
    """Do n blocking calls through asyncio.to_thread all run at the same time (a barrier of n parties)?"""
    barrier = threading.Barrier(n, timeout=5)

    def program() -> bool:
        try:
            barrier.wait()
            return True
        except threading.BrokenBarrierError:
            return False

    async def main() -> bool:
        if sized:
            size_executor(parallel=n, datacenters=1)
        return all(await asyncio.gather(*(asyncio.to_thread(program) for _ in range(n))))

    return asyncio.run(main())


@pytest.mark.reliability("a datacenter worker with --parallel 40 gets 40 host programs", "all 40 run at once")
def test_a_worker_runs_parallel_host_programs_at_once(record_property: Callable[[str, object], None]) -> None:
    unsized = _all_at_once(AT_ONCE, sized=False)  # Python's default: fewer threads than programs
    sized = _all_at_once(AT_ONCE, sized=True)
    record_property("observed", f"{AT_ONCE} blocking programs at once: default executor {unsized}, sized {sized}")
    assert not unsized
    assert sized


@given(parallel=st.integers(0, 2000), datacenters=st.integers(0, 20))
@settings(max_examples=50, deadline=None)
def test_threads_cover_every_activity_a_worker_may_run(parallel: int, datacenters: int) -> None:
    # every activity the worker's queues may hold at once (max_concurrent_activities=parallel per queue)
    assert executor_threads(parallel, datacenters) >= max(1, parallel) * max(1, datacenters)


@given(parallel=st.integers(0, 5000))
@settings(max_examples=50, deadline=None)
def test_activity_polls_grow_with_parallel_within_bounds(parallel: int) -> None:
    # never below the SDK's 5 (a small worker polls as before), never an unbounded number of long-polls
    polls = activity_pollers(parallel)
    assert 5 <= polls <= 32
    assert polls >= min(32, parallel // 4)
