"""The local transport shipped in the package (upgrader/transport/local.py): a host that is a directory tree.

The engine's runs against it (the real agent) are tested through tests/fakes (test_engine_fake_hosts,
test_rollback_states, ...); these tests hold the transport's own promises, usable without the fakes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from upgrader.errors import TransportError
from upgrader.transport.base import Endpoint, Transport
from upgrader.transport.local import Controller, ControllerKilled, LocalHost, LocalTransport, install_systemctl


@pytest.fixture
def host(tmp_path: Path) -> LocalHost:
    bin_dir = tmp_path / "bin"
    install_systemctl(bin_dir)
    return LocalHost("h1", tmp_path / "h1", bin_dir)


def transport(host: LocalHost, controller: Controller | None = None) -> LocalTransport:
    return LocalTransport(host, Endpoint(name=host.name, address=f"local:{host.name}"), controller=controller)


def test_it_is_a_transport_and_the_fakes_are_it(host: LocalHost) -> None:
    from tests.fakes.agent_host import FakeHost, FakeTransport

    t: Transport = transport(host)  # the engine's interface, checked by mypy
    assert FakeTransport is LocalTransport and FakeHost is LocalHost and t.endpoint.name == "h1"


def test_host_paths_live_in_the_tree_and_are_cut_out_of_answers(host: LocalHost, tmp_path: Path) -> None:
    host.install("/opt/app", "1.0.0", {"VERSION": "1.0.0\n"})
    t = transport(host)
    res = t.run(["cat", "/opt/app/current/VERSION"])  # an argument that is a host path is moved into the tree
    assert res.ok and res.stdout == "1.0.0\n", res
    assert t.run(["pwd"]).stdout == "\n"  # it runs in the tree, and the tree is cut out of what comes back
    src = tmp_path / "upload"
    src.write_bytes(b"\x00payload")
    t.put(src, "/var/tmp/upload")
    assert host.path("/var/tmp/upload").read_bytes() == b"\x00payload"
    assert host.current("/opt/app") == "1.0.0" and host.releases("/opt/app") == ["1.0.0"]


def test_the_stand_in_systemctl_keeps_unit_states(host: LocalHost) -> None:
    host.unit("app.service", start="exit 3", state="inactive")
    t = transport(host)
    assert not t.run(["systemctl", "start", "app.service"]).ok and host.state("app.service") == "failed"
    host.unit("app.service", state="inactive")
    assert t.run(["systemctl", "start", "app.service"]).ok and host.state("app.service") == "active"


def test_an_unreachable_host_and_a_killed_controller_fail_as_they_would(host: LocalHost) -> None:
    controller = Controller()
    t = transport(host, controller)
    host.unreachable = True
    with pytest.raises(TransportError, match="unreachable"):
        t.run(["true"])
    host.unreachable = False
    controller.kill()
    with pytest.raises(ControllerKilled):  # a BaseException: nothing in the engine catches it
        t.run(["true"])
