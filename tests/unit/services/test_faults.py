"""The test-only fault seam: off by default, armed points fire once, bad specs refused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral.domain.errors import HostFailure, InvalidInput
from corral.services import faults


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    faults.disarm()
    yield
    faults.disarm()


def test_unarmed_points_do_nothing() -> None:
    faults.fault_point("create.begin")
    assert faults.hit() == []


def test_an_armed_raise_fires_once_at_its_point_only() -> None:
    faults.arm("start.begin=raise")
    faults.fault_point("stop.begin")
    with pytest.raises(HostFailure, match=r"injected test fault at start\.begin"):
        faults.fault_point("start.begin")
    faults.fault_point("start.begin")
    assert faults.hit() == ["start.begin"]


@pytest.mark.parametrize("text", ["start.begin", "start.begin=explode", "=kill"])
def test_bad_specs_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="want POINT=kill or POINT=raise"):
        faults.arm(text)


def test_the_daemon_arms_only_with_its_flag() -> None:
    from corral.daemon.main import parse_args

    assert parse_args([]).test_faults is False
    assert parse_args(["--test-faults"]).test_faults is True
