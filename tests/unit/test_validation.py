"""Every class of bad input gives `file:line:col: message — hint`, and the CLI prints each one on its own line.

Each case breaks one line of the valid files in inputs/ and names the exact problem expected,
so a reviewer can check the position against the file by eye.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.conftest import INVENTORY, PLAYBOOKS, REPO
from upgrader.cli.main import main
from upgrader.commands.inputs import load_facts_for, load_inputs
from upgrader.errors import InputError

pytestmark = pytest.mark.reliability(
    "bad input: a clean `file:line:col: message — hint` error, exit 1, nothing changed"
)

Record = Callable[[str, object], None]
INPUTS = Path(__file__).parent / "inputs"
SHA_520 = "5a921b820d2e33650599a76c7cc64feafa7fbb974850775e7e6aa19c9075e00b"
MIGRATE = 'command: ["{release}/bin/migrate-config", /etc/ordergw/ordergw.conf]'
ZONE = "timezone: America/New_York}"

# (file to break, text to replace, replacement, the problems expected — exactly, in order)
CASES = {
    "yaml syntax": (
        "playbook",
        "vendor: Acme Execution Systems",
        "vendor: [Acme",
        ["playbook.yml:4:8: YAML syntax error: did not find expected ',' or ']' — fix the YAML syntax"],
    ),
    "duplicate key": (
        "playbook",
        "vendor: Acme Execution Systems",
        "vendor: Acme Execution Systems\nvendor: Other",
        ["playbook.yml:4:1: duplicate key 'vendor' — remove one of them"],
    ),
    "unknown key, required one misspelt": (
        "playbook",
        'upgrade_from: ">=5.1,<5.2"',
        'upgrade_form: ">=5.1,<5.2"',
        ["playbook.yml:8:1: unknown key 'upgrade_form' in the top level — did you mean 'upgrade_from'?"],
    ),
    "unknown key, two candidates": (
        "playbook",
        "  bake: 8s",
        "  bake_tme: 8s",
        ["playbook.yml:27:3: unknown key 'bake_tme' in canary — did you mean 'bake' or 'bake_interval'?"],
    ),
    "hostile key is refused, not echoed": (
        "playbook",
        "vendor: Acme",
        '"evil\\nkey\\u202e": 1\nvendor: Acme',
        [
            "playbook.yml:3:1: invisible or control character U+000A a control character (Cc) in a key — retype the "
            "value without it (only printable characters and the ASCII space are allowed; tabs and line breaks are "
            "not, see the README)"
        ],
    ),
    "hostile key is escaped": (
        "playbook",
        "vendor: Acme",
        '"evil key<b>": 1\nvendor: Acme',
        [
            "playbook.yml:3:1: unknown key 'evil key<b>' in the top level — allowed keys: artifact, canary, "
            "checks, component, description, install, migrate, prechecks, requires, rollback, rollout, service, "
            "upgrade_from, vendor, version, version_scheme, via, windows"
        ],
    ),
    "string for a list": (
        "playbook",
        "config_files: [/etc/ordergw/ordergw.conf]",
        "config_files: /etc/ordergw/ordergw.conf",
        ["playbook.yml:17:17: install.config_files: expected a list, got '/etc/ordergw/ordergw.conf'"],
    ),
    "word for a number": (
        "playbook",
        "  hosts: 1",
        "  hosts: one",
        ["playbook.yml:26:10: canary.hosts: expected a whole number, got 'one'"],
    ),
    "string for a mapping": (
        "playbook",
        "service:\n  systemd: ordergw.service",
        "service: ordergw.service",
        ["playbook.yml:20:10: service: expected a mapping, got 'ordergw.service'"],
    ),
    "number or percentage": (
        "playbook",
        "batch: 1",
        "batch: lots",
        [
            "playbook.yml:29:10: rollout.batch: 'lots' is not allowed here — expected hosts per wave: a number or a "
            "percentage of the datacenter"
        ],
    ),
    "shell in a version": (
        "playbook",
        'version: "5.2.0"',
        'version: "1.0; rm -rf /"',
        [
            "playbook.yml:4:10: version: invalid version '1.0; rm -rf /' — use a PEP 440 version such as 5.2.0 or "
            "5.2.0rc1, or a vendor version such as 5.2.0_b123 (with version_scheme: vendor)"
        ],
    ),
    "unquoted float version": (
        "playbook",
        'version: "5.2.0"',
        "version: 3.10",
        ["playbook.yml:4:10: version: version 3.10 was read as a number — quote it, e.g. '3.10'"],
    ),
    "invalid specifier": (
        "playbook",
        'upgrade_from: ">=5.1,<5.2"',
        'upgrade_from: "=>5.1"',
        ["playbook.yml:8:15: upgrade_from: invalid version specifier '=>5.1' — use a form such as '>=4.2,<4.4'"],
    ),
    "sha256 of wrong shape": (
        "playbook",
        f'sha256: "{SHA_520}"',
        'sha256: "5a921b82"',
        [
            "playbook.yml:7:11: artifact.sha256: sha256 must be 64 hexadecimal characters — copy it from the vendor's "
            ".sha256 file"
        ],
    ),
    "target upgrades from itself": (
        "playbook",
        'upgrade_from: ">=5.1,<5.2"',
        'upgrade_from: ">=5.1"',
        ["playbook.yml:8:15: 5.2.0 may upgrade from itself (a cycle) — its upgrade_from must exclude its own version"],
    ),
    "hop accepts a newer release": (
        "playbook",
        'upgrade_from: ">=5.0,<5.1"',
        'upgrade_from: ">=5.0,!=5.1.0"',
        [
            "playbook.yml:11:19: 5.1.0 accepts the newer 5.2.0: a downgrade edge makes a cycle — narrow upgrade_from, "
            "e.g. '<5.1.0'"
        ],
    ),
    "dead end": (
        "playbook",
        'upgrade_from: ">=5.1,<5.2"',
        'upgrade_from: ">=5.1.5,<5.2"',
        [
            "playbook.yml:11:19: hop 5.1.0 is a dead end: the target 5.2.0 cannot be reached from it — add a hop that "
            "accepts it, or widen the target's upgrade_from"
        ],
    ),
    "unknown timezone": (
        "playbook",
        ZONE,
        "timezone: America/New_Yrok}",
        ["playbook.yml:33:56: unknown timezone 'America/New_Yrok' — use an IANA name such as America/New_York"],
    ),
    "timezone that is a directory": (
        "playbook",
        ZONE,
        "timezone: America}",
        ["playbook.yml:33:56: unknown timezone 'America' — use an IANA name such as America/New_York"],
    ),
    "datacenter_order names an unknown DC": (
        "playbook",
        "datacenter_order: [ny5, ch2]",
        "datacenter_order: [ny5, chi2]",
        ["playbook.yml:30:27: datacenter 'chi2' is not in inventory inventory.yml — did you mean 'ch2'?"],
    ),
    "datacenter_order lists a DC twice": (
        "playbook",
        "datacenter_order: [ny5, ch2]",
        "datacenter_order: [ny5, ny5]",
        [
            "playbook.yml:30:27: datacenter 'ny5' is listed twice in datacenter_order — list each datacenter once; its "
            "hosts are upgraded in one pass"
        ],
    ),
    "command as a shell string": (
        "playbook",
        MIGRATE,
        'command: "{release}/bin/migrate-config /etc/ordergw/ordergw.conf"',
        [
            "playbook.yml:19:12: migrate.command: commands are lists of arguments, not shell strings — write e.g. "
            "[systemctl, restart, ordergw]"
        ],
    ),
    "unknown placeholder": (
        "playbook",
        MIGRATE,
        MIGRATE.replace("{release}", "{relase}"),
        [
            "playbook.yml:19:12: migrate.command: unknown placeholder {relase} in '{relase}/bin/migrate-config' — use "
            "one of {release}, {previous}, {version}, {from_version}, {root}, {component}"
        ],
    ),
    "undefined role": (
        "inventory",
        "roles: [oe, risk]",
        "roles: [oe, rsk]",
        ["inventory.yml:25:21: host ch2-oe01 has role 'rsk', which is not defined — did you mean 'risk'?"],
    ),
    "host in two datacenters": (
        "inventory",
        "      ch2-oe01:",
        "      ny5-oe01:",
        [
            "inventory.yml:23:7: host ny5-oe01 is defined in both ny5 and ch2 — host names must be unique across "
            "datacenters"
        ],
    ),
    "two names, one address:port": (
        "inventory",
        "address: 192.0.2.16",
        "address: 192.0.2.15",
        [
            "inventory.yml:17:18: ny5-oe02 and ny5-oe01 point at the same host 192.0.2.15:22 — one machine must have "
            "one name, or it would be upgraded twice"
        ],
    ),
    "inventory timezone": (
        "inventory",
        "timezone: America/Chicago",
        "timezone: Mars/Olympus",
        ["inventory.yml:21:15: unknown timezone 'Mars/Olympus' — use an IANA name such as America/New_York"],
    ),
    "unquoted installed version": (
        "inventory",
        'installed: {ordergw: "5.1.0"}',
        "installed: {ordergw: 5.10}",
        [
            "inventory.yml:19:30: datacenters.ny5.hosts.ny5-oe02.installed.ordergw: version 5.10 was read as a number "
            "— quote it, e.g. '5.10'"
        ],
    ),
    "facts from another inventory": (
        "facts",
        "inventory: test-inventory",
        "inventory: eu-prod",
        [
            "facts.yml:1:12: these facts were gathered from inventory 'eu-prod', not 'test-inventory' — gather facts "
            "for this inventory with `upgrader facts`"
        ],
    ),
    "facts name an unknown host": (
        "facts",
        "  ny5-oe01:",
        "  ny5-oe09:",
        [
            "facts.yml:3:3: host ny5-oe09 is not in inventory inventory.yml — gather facts for this inventory with "
            "`upgrader facts`"
        ],
    ),
}


def broken(tmp: Path, kind: str, old: str, new: str) -> None:
    for f in INPUTS.iterdir():
        shutil.copy(f, tmp / f.name)
    target = tmp / f"{kind}.yml"
    text = target.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"the case must name one spot in {kind}.yml: {old!r}"
    target.write_text(text.replace(old, new), encoding="utf-8")


def problems(tmp: Path) -> list[str]:
    try:
        inputs = load_inputs(tmp / "playbook.yml", tmp / "inventory.yml")
        load_facts_for(tmp / "facts.yml", inputs.inventory)
    except InputError as exc:
        return [str(p) for p in exc.problems]
    return []


def test_the_base_inputs_are_valid(in_tmp: Path, record_property: Record) -> None:
    broken(in_tmp, "playbook", "vendor:", "vendor:")
    found = problems(in_tmp)
    assert found == []
    record_property("observed", f"{len(found)} problem(s) in {len(list(in_tmp.glob('*.yml')))} input files")


@pytest.mark.parametrize("name", sorted(CASES))
def test_problem_is_located_and_explained(name: str, in_tmp: Path, record_property: Record) -> None:
    kind, old, new, expected = CASES[name]
    broken(in_tmp, kind, old, new)
    found = problems(Path("."))
    assert found == expected
    record_property("observed", f"{len(found)} problem: {found[0][:150]}")


def test_every_problem_is_reported_at_once(in_tmp: Path, record_property: Record) -> None:
    broken(in_tmp, "playbook", 'version: "5.2.0"', 'version: "5.2.0"\nvendr: x')
    text = (in_tmp / "playbook.yml").read_text().replace("batch: 1", "batch: 0%").replace("8s", "eight")
    (in_tmp / "playbook.yml").write_text(text)
    found = problems(Path("."))
    places = [p.split(": ", 1)[0] for p in found]
    assert places == ["playbook.yml:5:1", "playbook.yml:28:9", "playbook.yml:30:10"]
    record_property("observed", f"{len(found)} problems in one report, at {', '.join(places)}")


# ---- the CLI ----


def run_cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], list[str]]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_validate_prints_each_problem_on_one_line_and_changes_nothing(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, record_property: Record
) -> None:
    monkeypatch.setenv("UPGRADER_STATE_DIR", str(in_tmp / "state"))
    broken(in_tmp, "inventory", "roles: [oe, risk]", "roles: [oe, rsk]")
    text = (in_tmp / "playbook.yml").read_text()
    (in_tmp / "playbook.yml").write_text(
        text.replace('version: "5.2.0"', "version: 3.10").replace("  bake: 8s", '  bake_tme: "evil\\nnext line"')
    )
    before = {p.name: p.read_bytes() for p in in_tmp.iterdir()}
    code, out, err = run_cli("validate", "playbook.yml", "-i", "inventory.yml", capsys=capsys)
    assert code == 1
    assert out == []
    assert err == [
        "error[bad-input]: inventory.yml:25:21: host ch2-oe01 has role 'rsk', which is not defined — "
        "did you mean 'risk'?",
        "error[bad-input]: playbook.yml:4:10: version: version 3.10 was read as a number — quote it, e.g. '3.10'",
        "error[bad-input]: playbook.yml:27:3: unknown key 'bake_tme' in canary — "
        "did you mean 'bake' or 'bake_interval'?",
        "error[bad-input]: playbook.yml:27:13: invisible or control character U+000A a control character (Cc) in a "
        "value — retype the value without it (only printable characters and the ASCII space are allowed; tabs and "
        "line breaks are not, see the README)",
    ]
    after = {p.name: p.read_bytes() for p in in_tmp.iterdir()}
    assert after == before  # no state dir, no file touched
    record_property(
        "observed",
        f"exit {code}; {len(err)} stderr lines, {len(out)} stdout; {len(after)} files, "
        f"{sum(after[n] != before.get(n) for n in after)} changed, {len(set(after) - set(before))} created",
    )


def test_validate_accepts_the_shipped_examples(record_property: Record) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "upgrader", "validate", *map(str, PLAYBOOKS), "-i", str(INVENTORY)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"ok: {len(PLAYBOOKS)} playbook(s)")
    assert proc.stderr == ""
    first = proc.stdout.splitlines()[0].replace(f"{REPO}/", "")
    record_property("observed", f"exit {proc.returncode}: {first[:120]}; stderr empty")


def test_plan_with_bad_input_exits_1_without_traceback(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], record_property: Record
) -> None:
    broken(in_tmp, "playbook", "batch: 1", "batch: lots")
    code, out, err = run_cli("plan", "playbook.yml", "-i", "inventory.yml", capsys=capsys)
    assert (code, out) == (1, [])
    assert len(err) == 1 and err[0].startswith("error[bad-input]: playbook.yml:29:10: rollout.batch:")
    record_property("observed", f"exit {code}, {len(err)} stderr line (no traceback): {err[0][:120]}")
