"""Shared helpers for the unit tests of the pure core (no network, no hosts)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from upgrader.commands.inputs import load_facts_for, load_inputs
from upgrader.engine import pool as pool_module
from upgrader.engine import remote
from upgrader.errors import RefusedError
from upgrader.models.plan import Plan
from upgrader.planning.planner import facts_from_inventory, make_plan
from upgrader.transport import fabric_adapter

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yml"))
INVENTORY = REPO / "inventories" / "prod-na.yml"


def plan_files(playbook: Path, inventory: Path, facts: Path | None = None) -> Plan:
    """What `upgrader plan` computes, without the CLI."""
    inputs = load_inputs(playbook, inventory)
    known = load_facts_for(facts, inputs.inventory) if facts else facts_from_inventory(inputs.inventory.model)
    return make_plan(
        inputs.playbook.model,
        inputs.inventory.model,
        known,
        playbook_ref=inputs.playbook_ref(),
        inventory_ref=inputs.inventory_ref(),
        controller_files=inputs.controller_files(),
    )


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory, so file names in messages and plans are short and stable."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """A webhook on 127.0.0.1 that keeps every JSON body posted to it; $UPG_TEST_HOOK is its URL."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("UPG_TEST_HOOK", f"http://127.0.0.1:{httpd.server_address[1]}/hook")
    yield received
    httpd.shutdown()
    httpd.server_close()


class Connected(RefusedError):
    """Raised where a connection would begin: the check let the plan through."""


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every pool or transport created and every agent start, recorded; none of them connects."""
    made: list[str] = []

    def transport(self: fabric_adapter.FabricTransport, endpoint: Any, *args: Any, **kwargs: Any) -> None:
        made.append(f"transport {endpoint.name}")
        raise Connected(f"reached the transport of {endpoint.name}")

    def pool(self: pool_module.Pool, *args: Any, **kwargs: Any) -> None:
        made.append("pool")
        raise Connected("reached the pool")

    monkeypatch.setattr(fabric_adapter.FabricTransport, "__init__", transport)
    monkeypatch.setattr(pool_module.Pool, "__init__", pool)
    monkeypatch.setattr(remote, "start", lambda *a, **k: made.append("agent start"))
    yield made
