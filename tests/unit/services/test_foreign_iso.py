"""`create --iso`: a missing ISO is named as missing (it said "give an absolute path" for an
absolute path the CLI had already made, sending the operator the wrong way)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput
from corral.domain.instance import Kind
from corral.services.foreign import FOREIGN_TEMPLATE, ForeignSource


def test_a_missing_iso_is_said_to_be_missing(tmp_path: Path) -> None:
    missing = tmp_path / "installer.iso"
    with pytest.raises(InvalidInput) as refused:
        ForeignSource(iso=missing).prepare(Kind.VM, {})
    assert refused.value.message == f"ISO '{missing}' is not a file on the daemon's host"


def test_a_relative_iso_asks_for_an_absolute_path() -> None:
    with pytest.raises(InvalidInput) as refused:
        ForeignSource(iso=Path("installer.iso")).prepare(Kind.VM, {})
    assert "give an absolute path" in refused.value.message


def test_an_existing_iso_is_taken(tmp_path: Path) -> None:
    iso = tmp_path / "installer.iso"
    iso.write_bytes(b"\0" * 4096)
    assert ForeignSource(iso=iso).prepare(Kind.VM, {"disk": "1G"}) == (
        FOREIGN_TEMPLATE, {"disk": "1G"})
