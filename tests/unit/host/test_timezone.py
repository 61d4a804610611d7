"""The host's zone by name, from $TZ, the /etc/localtime link or /etc/timezone."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput
from corral.host.timezone import local_zone_name, zone

ZONEINFO = Path("/usr/share/zoneinfo")


def test_the_localtime_links_target_names_the_zone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (ZONEINFO / "Europe" / "Berlin").exists():
        pytest.skip("this host has no tz database files")
    monkeypatch.delenv("TZ", raising=False)
    (tmp_path / "localtime").symlink_to(ZONEINFO / "Europe" / "Berlin")
    (tmp_path / "timezone").write_text("Asia/Tokyo\n")
    assert local_zone_name(tmp_path) == "Europe/Berlin"


def test_tz_comes_first_then_etc_timezone_then_utc(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", ":America/New_York")
    assert local_zone_name(tmp_path) == "America/New_York"
    monkeypatch.setenv("TZ", "Not/AZone")
    (tmp_path / "timezone").write_text("Asia/Tokyo\n")
    assert local_zone_name(tmp_path) == "Asia/Tokyo"
    (tmp_path / "timezone").unlink()
    assert local_zone_name(tmp_path) == "UTC"


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../../etc/passwd", "/etc/localtime"])
def test_unknown_zones_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="not a known IANA zone name"):
        zone(name)
