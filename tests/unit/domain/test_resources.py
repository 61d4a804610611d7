import pytest

from corral.domain.errors import InvalidInput
from corral.domain.resources import Resources, apply_settings


def test_apply_parses_each_key() -> None:
    res = apply_settings(Resources(), {"cpus": "2", "memory": "512M", "disk": "2G"})
    assert (res.cpus, res.memory, res.disk) == (2, 512 * 1024**2, 2 * 1024**3)


@pytest.mark.parametrize(
    ("settings", "says"),
    [({"cpus": "0"}, "at least 1"), ({"cpus": "-2"}, "at least 1"),
     ({"cpus": "two"}, "whole number"), ({"memory": "256"}, "no unit"),
     ({"memory": "1M"}, "below the minimum"), ({"colour": "red"}, "unknown resource key"),
     ({"memory_min": "1G", "memory": "512M"}, "must not exceed")],
)
def test_invalid_settings(settings: dict[str, str], says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        apply_settings(Resources(), settings)


def test_round_trip_dict() -> None:
    res = Resources(cpus=3, memory=1024**3)
    assert Resources.from_dict(res.to_dict() | {"unknown": 1}) == res
