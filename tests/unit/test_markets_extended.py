"""Market codes as exchange_calendars and ISO 10383 name them, and extended sessions that block upgrades too."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from upgrader.cli.main import main
from upgrader.models.inventory import Inventory
from upgrader.models.playbook import Windows
from upgrader.windows import evaluate_windows, markets

NY = ZoneInfo("America/New_York")
ROOT = Path(__file__).resolve().parents[2]


def inventory(mics: list[str], market_hours: dict[str, dict[str, str]] | None = None) -> Inventory:
    return Inventory.model_validate(
        {
            "name": "t",
            "defaults": {"user": "deploy"},
            "roles": {"oe": ["ordergw"]},
            "market_hours": market_hours or {},
            "datacenters": {
                "ny5": {
                    "timezone": "America/New_York",
                    "markets": mics,
                    "hosts": {"h1": {"address": "192.0.2.1", "roles": ["oe"]}},
                }
            },
        }
    )


def blockers(at: dt.datetime, inv: Inventory, margin: str = "0s") -> list[str]:
    v = evaluate_windows(Windows.model_validate({"market_margin": margin}), inv, ["ny5"], at)
    return [b.text.partition(" until ")[0] for b in v.blockers]


@pytest.mark.parametrize("mic", ["XCME", "CMES", "ARCX", "BATS", "IEPA", "IFUS", "XCBT", "XNAS", "XCBO"])
def test_codes_validate_and_window_alike(mic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """validate and windows accept the same codes (a cold cache: the library itself answers)."""
    monkeypatch.setenv("UPGRADER_CACHE_DIR", str(tmp_path / "cache"))
    markets._calendar_names.cache_clear()
    markets._month.cache_clear()
    inv = tmp_path / "inv.yml"
    inv.write_text(f"""\
name: t
defaults: {{user: deploy}}
roles: {{oe: [ordergw]}}
datacenters:
  ny5:
    timezone: America/New_York
    markets: [{mic}]
    hosts: {{h1: {{address: 192.0.2.1, roles: [oe]}}}}
""")
    assert main(["validate", "-i", str(inv)]) == 0
    # Tuesday 2026-12-01 11:00 ET: every one of these markets is in its regular session.
    at = dt.datetime(2026, 12, 1, 11, tzinfo=NY)
    assert any(mic in b for b in blockers(at, inventory([mic]))), mic


def test_an_unknown_code_is_refused_at_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "inv.yml"
    inv.write_text(
        "name: t\ndefaults: {user: deploy}\nroles: {oe: [ordergw]}\ndatacenters:\n  ny5:\n"
        "    timezone: America/New_York\n    markets: [XQQQ]\n    hosts: {h1: {address: 192.0.2.1, "
        "roles: [oe]}}\n"
    )
    assert main(["validate", "-i", str(inv)]) == 1
    assert f"{inv}:7:15: market XQQQ is not known" in capsys.readouterr().err


def test_pre_and_post_market_block_when_asked() -> None:
    regular = inventory(["XNAS"])
    extended = inventory(["XNAS"], {"XNAS": {"before_open": "330m", "after_close": "4h"}})
    pre, post, night = (dt.datetime(2026, 12, 1, h, m, tzinfo=NY) for h, m in ((5, 0), (19, 30), (20, 30)))
    assert blockers(pre, regular) == [] and blockers(post, regular) == []
    assert blockers(pre, extended) == ["XNAS pre-market is open"]
    assert blockers(post, extended) == ["XNAS post-market is open"]
    assert blockers(night, extended) == []
    # The margin counts from the first open of the day: 04:00 ET with the pre-market.
    early = dt.datetime(2026, 12, 1, 3, 45, tzinfo=NY)
    [soon] = blockers(early, extended, margin="30m")
    assert soon.startswith("XNAS opens at Tue 2026-12-01 04:00 America/New_York") and "(pre-market)" in soon
    assert blockers(early, regular, margin="30m") == []
