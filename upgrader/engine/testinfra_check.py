"""The `testinfra` check kind: a pytest-testinfra module run against one host, as verification.

The module runs on the controller (a `pytest` process of its own, so a vendor's assertions cannot
break the engine), over OpenSSH to the host's very endpoint: the same address, user and key, the
same jump host, the same known_hosts with strict checking.  Its ssh_config is written here and
passed with -F, so nothing in ~/.ssh/config or /etc/ssh/ssh_config applies.  This is the one
path to a host that is not the transport seam: testinfra speaks its own SSH, and the point of the
check is that the operator's own tests see the host as a person would.

The module reads what it verifies from the environment: UPGRADER_COMPONENT, UPGRADER_VERSION (the
release that should be running) and UPGRADER_HOST.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from upgrader.models.plan import ControllerFile
from upgrader.transport.base import DEFAULTS, Endpoint

MAX_FAILURES_KEPT = 20  # failed tests reported per run; the rest are counted
MESSAGE_CHARS = 500  # of each assertion message, for the journal and the report


@dataclass(frozen=True)
class TestFailure:
    test: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"test": self.test, "message": self.message}


@dataclass(frozen=True)
class TestinfraResult:
    ok: bool
    passed: int
    failed: int
    failures: tuple[TestFailure, ...]
    seconds: float
    error: str | None = None  # the module could not run at all (timeout, collection error, no such file)

    @property
    def reason(self) -> str | None:
        """None when it passed, else one line for the step's failure."""
        if self.error:
            return self.error
        if not self.ok:
            first = self.failures[0] if self.failures else TestFailure("?", "failed")
            return f"{self.failed} test(s) failed; first {first.test}: {first.message.splitlines()[0][:200]}"
        return None

    def to_dict(self) -> dict[str, object]:
        # tests_* and not passed/failed: the journal's 'failed' field names hosts (loading/records.py).
        return {
            "ok": self.ok,
            "tests_passed": self.passed,
            "tests_failed": self.failed,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "failures": [f.to_dict() for f in self.failures],
        }


def ssh_config(endpoint: Endpoint, connect_timeout: float, config_path: Path) -> str:
    """An ssh_config with one entry for the host (alias: its inventory name) and one for its jump host."""

    def block(alias: str, ep: Endpoint, proxy: str | None) -> list[str]:
        lines = [
            f"Host {alias}",
            f"  HostName {ep.address}",
            f"  Port {ep.port}",
            f"  User {ep.user}",
            "  BatchMode yes",
            "  StrictHostKeyChecking yes",
            "  GlobalKnownHostsFile /dev/null",
            "  ForwardAgent no",
            "  ForwardX11 no",
            "  IdentitiesOnly yes",
            f"  ConnectTimeout {max(1, int(connect_timeout))}",
        ]
        if ep.known_hosts:
            lines.append(f"  UserKnownHostsFile {_quoted(ep.known_hosts)}")
        if ep.ssh_key:
            lines.append(f"  IdentityFile {_quoted(ep.ssh_key)}")
        lines.append(f"  ProxyCommand {proxy}" if proxy else "  ProxyCommand none")
        return lines

    jump_alias = "upgrader-jump"
    proxy = f"ssh -F {_quoted(str(config_path))} -W %h:%p {jump_alias}" if endpoint.jump else None
    lines = block(_alias(endpoint), endpoint, proxy)
    if endpoint.jump:
        lines += block(jump_alias, endpoint.jump, None)
    return "\n".join(lines) + "\n"


def run_module(
    module: Path,
    endpoint: Endpoint,
    *,
    component: str,
    version: str,
    timeout: float,
    connect_timeout: float = DEFAULTS.connect,
    python: str = sys.executable,
    pinned: Sequence[ControllerFile] | None = None,
    base: Path | None = None,
) -> TestinfraResult:
    """Run ``module``'s tests against ``endpoint`` within ``timeout`` seconds; the result is a value.

    With ``pinned`` (the plan's controller_files, paths relative to ``base``, the playbook's
    directory), the module runs from a private copy of exactly those files, each read once and
    checked against its sha256 as it is copied: a file edited after the plan was reviewed — even
    during the run, after `apply` checked it — fails the check and never runs.
    """
    started = time.monotonic()
    if not module.is_file():
        return TestinfraResult(False, 0, 0, (), 0.0, f"testinfra module {module} not found")
    with tempfile.TemporaryDirectory(prefix="upgrader-testinfra-") as tmp:
        work = Path(tmp)  # 0700: mkdtemp's mode; the ssh_config names a key and must not be shared
        if pinned is not None:
            copied = _pinned_copy(module, pinned, base or module.parent, work / "src")
            if isinstance(copied, str):
                return TestinfraResult(False, 0, 0, (), time.monotonic() - started, copied)
            module = copied
        config = work / "ssh_config"
        config.write_text(ssh_config(endpoint, connect_timeout, config))
        (work / "pytest.ini").write_text("[pytest]\naddopts =\n")  # none of the project's own settings
        junit = work / "junit.xml"
        # One SSH connection (through the jump host) for all the module's commands, in this private
        # directory, stopped below: a new handshake per command made a 4-test module take ~25 s.
        control = f"-o ControlMaster=auto -o ControlPersist=30s -o ControlPath={work}/cm-%C"
        argv = [
            python,
            "-m",
            "pytest",
            str(module.resolve()),
            f"--hosts=ssh://{_alias(endpoint)}",
            f"--ssh-config={config}",
            f"--ssh-extra-args={control}",
            "-c",
            str(work / "pytest.ini"),
            "--rootdir",
            str(work),
            "-p",
            "no:cacheprovider",
            "-q",
            "--tb=short",
            f"--junitxml={junit}",
        ]
        env = {
            **os.environ,
            "UPGRADER_COMPONENT": component,
            "UPGRADER_VERSION": version,
            "UPGRADER_HOST": endpoint.name,
            "PYTHONDONTWRITEBYTECODE": "1",
            # A private bytecode cache: a __pycache__ planted next to the pinned sources is never read
            # (the plan pins the sources, loading/pins.py; a stale .pyc would run code it does not name).
            "PYTHONPYCACHEPREFIX": str(work / "pycache"),
        }
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=work,
            start_new_session=True,
            text=True,
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: pytest and the ssh processes it started
            proc.communicate()
            return TestinfraResult(
                False,
                0,
                0,
                (),
                time.monotonic() - started,
                f"testinfra module {module.name} did not finish within {timeout:g}s",
            )
        finally:
            _stop_master(config, control, _alias(endpoint))
        seconds = time.monotonic() - started
        if not junit.is_file():
            return TestinfraResult(
                False,
                0,
                0,
                (),
                seconds,
                f"testinfra module {module.name} did not run (exit {proc.returncode}): {_last_line(output)}",
            )
        return _parsed(junit, proc.returncode, seconds, output)


def _parsed(junit: Path, code: int, seconds: float, output: str) -> TestinfraResult:
    root = ET.parse(junit).getroot()
    passed, failures = 0, []
    for case in root.iter("testcase"):
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is None:
            if case.find("skipped") is None:
                passed += 1
            continue
        message = (bad.get("message") or bad.text or "failed").strip()
        name = case.get("name", "?").split("[ssh://", 1)[0]  # testinfra parametrizes each test by host
        failures.append(TestFailure(name, message[:MESSAGE_CHARS]))
    if code not in (0, 1) or (code == 1 and not failures):  # collection errors, usage errors, no tests
        return TestinfraResult(
            False,
            passed,
            len(failures),
            tuple(failures[:MAX_FAILURES_KEPT]),
            seconds,
            f"testinfra run failed (pytest exit {code}): {_last_line(output)}",
        )
    if passed == 0 and not failures:
        return TestinfraResult(False, 0, 0, (), seconds, "the testinfra module has no tests")
    return TestinfraResult(not failures, passed, len(failures), tuple(failures[:MAX_FAILURES_KEPT]), seconds)


def _pinned_copy(module: Path, pinned: Sequence[ControllerFile], base: Path, into: Path) -> Path | str:
    """``module``'s place in a copy of the pinned files under ``into``; a string (the reason) if one changed."""
    wanted = Path(os.path.relpath(module, base)).as_posix()
    if wanted not in {f.path for f in pinned}:
        return f"testinfra module {wanted} is not pinned by the plan; not run"
    for f in pinned:
        if Path(f.path).is_absolute() or ".." in Path(f.path).parts:  # pins.py writes neither
            return f"controller file {f.path} is outside the playbook's directory; not run"
        try:
            data = (base / f.path).read_bytes()
        except OSError as exc:
            return f"controller file {f.path} cannot be read ({exc.strerror or exc}); not run"
        if "sha256:" + hashlib.sha256(data).hexdigest() != f.sha256:
            return f"controller file {f.path} changed since the plan was reviewed; not run"
        target = into / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return into / wanted


def _stop_master(config: Path, control: str, alias: str) -> None:
    """End the shared connection the module's ssh commands left behind (it would linger ControlPersist)."""
    subprocess.run(
        ["ssh", "-F", str(config), *control.split(), "-O", "exit", alias],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=10,
        check=False,
    )


def _alias(endpoint: Endpoint) -> str:
    return endpoint.name


def _quoted(path: str) -> str:
    return '"' + path.replace('"', "") + '"' if any(c.isspace() for c in path) else path


def _last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"
