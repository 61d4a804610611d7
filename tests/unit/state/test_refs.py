"""A reference is an id only when it is ASCII digits: '²' passes ``str.isdigit`` but not
``int`` (found by the API fuzzer as a 500 on ``GET /api/v1/instances/²/console/log``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput, NotFound
from corral.domain.names import is_decimal
from corral.domain.schedule import parse_daily
from corral.state.database import Database
from corral.state.netstore import NetworkStore
from corral.state.store import StateStore


def test_only_ascii_digits_are_decimal() -> None:
    assert is_decimal("101") and not is_decimal("²") and not is_decimal("٣") \
        and not is_decimal("")


@pytest.mark.parametrize("ref", ["²", "٣", "¹⁰¹"])
def test_unicode_digits_name_nothing(tmp_path: Path, ref: str) -> None:
    db = Database.open(tmp_path / "corral.db")
    with pytest.raises(NotFound):
        StateStore(db).get_instance(ref)
    with pytest.raises(NotFound):
        NetworkStore(db).get_network(ref)


def test_a_daily_time_in_other_digits_is_refused() -> None:
    with pytest.raises(InvalidInput):
        parse_daily("²:00")
