"""The agent's own pieces, in-process on real files and a real loopback socket: HTTP response parsing,
chunked decoding, the host lock's modes, and the rollback chain it walks through recorded releases."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit import agent_code


def load(name: str) -> ModuleType:
    return agent_code.load(name)


A = load("upgrader_agent_protocol")  # pure functions only at module level; STATE is set per test below


@pytest.fixture
def agent(tmp_path: Path) -> ModuleType:
    module = load("upgrader_agent_protocol_state")
    setattr(module, "STATE", str(tmp_path / "state"))  # noqa: B010 (the host's /var/lib/upgrader, here)
    return module


# ---------------------------------------------------------------- HTTP responses


def test_a_plain_response_gives_status_and_body_cut_at_content_length() -> None:
    raw = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello, and more"
    assert A.parse_http_response(raw) == (200, "hello")


def test_header_names_are_case_insensitive_and_values_trimmed() -> None:
    raw = b"HTTP/1.1 503 Service Unavailable\r\ncOnTeNt-LeNgTh:   2 \r\n\r\nnope"
    assert A.parse_http_response(raw) == (503, "no")


def test_a_chunked_response_is_decoded() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n4;ext=1\r\nWiki\r\n6\r\npedia \r\n0\r\n\r\n"
    assert A.parse_http_response(raw) == (200, "Wikipedia ")


def test_an_invalid_utf8_body_is_replaced_not_raised() -> None:
    assert A.parse_http_response(b"HTTP/1.0 200 OK\r\n\r\n\xff\xfeok") == (200, "\ufffd\ufffdok")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"garbage",
        b"HTTP/1.0 200 OK\r\nno blank line",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.0 abc OK\r\n\r\n",
        b"HTTP/1.0\r\n\r\n",
    ],
)
def test_what_is_not_an_http_response_is_a_failed_check(raw: bytes) -> None:
    with pytest.raises(A.OpFailed, match="not an HTTP response"):
        A.parse_http_response(raw)


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=8), st.booleans())
def test_dechunk_inverts_chunked_encoding(chunks: list[bytes], extension: bool) -> None:
    ext = b";name=value" if extension else b""
    body = b"".join(b"%x%s\r\n%s\r\n" % (len(c), ext, c) for c in chunks) + b"0\r\n\r\n"
    assert A.dechunk(body) == b"".join(chunks)


def test_dechunk_stops_at_the_last_chunk_and_ignores_trailers() -> None:
    assert A.dechunk(b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n3\r\nxyz\r\n") == b"abc"


@given(st.binary(max_size=200))
def test_dechunk_of_anything_returns_bytes_or_raises_value_error(data: bytes) -> None:
    """A hostile or broken server: decoding ends with bytes (what it could read) or ValueError (a failed check)."""
    try:
        out = A.dechunk(data)
    except ValueError:
        return
    assert isinstance(out, bytes) and len(out) <= len(data)


@pytest.fixture
def server() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback HTTP/1.1 server that answers chunked, ignoring the agent's HTTP/1.0 (as some do)."""
    listener = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            requests.append(conn.recv(4096))
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for part in (b'{"version": "5.', b'2.0"}'):  # a chunk boundary inside the JSON value
                conn.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            conn.sendall(b"0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], requests
    thread.join(5)
    listener.close()


def test_a_version_check_reads_a_chunked_json_answer_over_a_real_socket(server: tuple[int, list[bytes]]) -> None:
    port, requests = server
    check = {"url": f"http://127.0.0.1:{port}/version", "field": "version"}
    assert A.reported_version(check, 5) == "5.2.0"
    assert requests[0].startswith(b"GET /version HTTP/1.0\r\nHost: 127.0.0.1:")


# ---------------------------------------------------------------- the host lock


def ctx(tmp_path: Path, run: str) -> dict[str, Any]:
    return {"component": "app", "run": run, "root": str(tmp_path / "opt" / "app")}


def test_acquire_check_release_and_what_the_lock_records(agent: ModuleType, tmp_path: Path) -> None:
    mine = ctx(tmp_path, "R1")
    got = agent.op_lock(
        mine, {"mode": "acquire", "operator": "ann@ctl", "plan": "p1", "kind": "apply", "controller": "ctl:4242"}
    )
    held = json.loads((tmp_path / "state" / "app" / "lock.json").read_text())
    assert got["lock"] == held
    assert {k: held[k] for k in ("run", "operator", "plan", "kind", "pid_host")} == {
        "run": "R1",
        "operator": "ann@ctl",
        "plan": "p1",
        "kind": "apply",
        "pid_host": "ctl:4242",
    }
    assert agent.op_lock(mine, {"mode": "acquire"})["reacquired"] is True  # same run (resume): kept as it was
    assert agent.op_lock(mine, {"mode": "check"})["lock"]["run"] == "R1"
    with pytest.raises(agent.OpFailed, match=r"locked by run R1 \(ann@ctl"):
        agent.op_lock(ctx(tmp_path, "R2"), {"mode": "acquire"})
    assert agent.op_lock(ctx(tmp_path, "R2"), {"mode": "release"}) == {"released": False, "holder": held}
    assert agent.op_lock(mine, {"mode": "release"}) == {"released": True}
    with pytest.raises(agent.OpFailed, match="lock is gone"):
        agent.op_lock(mine, {"mode": "check"})


def test_a_handover_keeps_the_previous_holder_and_the_old_run_learns_it(agent: ModuleType, tmp_path: Path) -> None:
    agent.op_lock(ctx(tmp_path, "APPLY"), {"mode": "acquire", "operator": "ann"})
    taken = agent.op_lock(
        ctx(tmp_path, "RB"), {"mode": "handover", "operator": "ops", "kind": "rollback", "reason": "INC-1"}
    )
    assert taken["previous_holder"]["run"] == "APPLY" and taken["lock"]["reason"] == "INC-1"
    with pytest.raises(agent.OpFailed, match="taken over by rollback run RB") as lost:
        agent.op_lock(ctx(tmp_path, "APPLY"), {"mode": "check"})
    assert lost.value.detail["handed_over"] is True


def test_an_unknown_lock_mode_is_refused(agent: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(agent.OpFailed, match="unknown lock mode"):
        agent.op_lock(ctx(tmp_path, "R1"), {"mode": "steal"})


# ---------------------------------------------------------------- the rollback chain


def releases(tmp_path: Path, previous: dict[str, str | None]) -> str:
    """Releases under a root, each with its recorded previous release (None: none recorded)."""
    root = tmp_path / "opt" / "app"
    for version, before in previous.items():
        meta = root / "releases" / version / ".upgrader"
        meta.mkdir(parents=True, mode=0o700)
        if before is not None:
            (meta / "previous.json").write_text(json.dumps({"version": before}))
    return str(root)


def test_the_chain_walks_recorded_previous_releases_newest_first(tmp_path: Path) -> None:
    root = releases(tmp_path, {"1.0": None, "2.0": "1.0", "3.0": "2.0", "4.0": "3.0"})
    assert A.rollback_chain(root, "4.0", "1.0") == ["4.0", "3.0", "2.0"]
    assert A.rollback_chain(root, "4.0", "3.0") == ["4.0"]
    assert A.rollback_chain(root, "2.0", "2.0") == []


def test_a_target_off_the_chain_gives_none(tmp_path: Path) -> None:
    root = releases(tmp_path, {"1.0": None, "2.0": "1.0", "9.0": None})
    assert A.rollback_chain(root, "2.0", "9.0") is None
    assert A.rollback_chain(root, "9.0", "1.0") is None


def test_a_cycle_in_the_records_ends_the_walk(tmp_path: Path) -> None:
    root = releases(tmp_path, {"1.0": "2.0", "2.0": "1.0", "0.9": None})
    assert A.rollback_chain(root, "2.0", "0.9") is None


def test_a_recorded_previous_that_cannot_be_a_release_name_ends_the_walk(tmp_path: Path) -> None:
    root = releases(tmp_path, {"2.0": "../../etc"})
    assert A.rollback_chain(root, "2.0", "1.0") is None
