import pytest

from corral.domain.errors import InvalidInput
from corral.domain.sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "value"),
    [("256M", 256 * 1024**2), ("1G", 1024**3), ("1.5G", 1536 * 1024**2), ("2T", 2 * 1024**4),
     ("512MiB", 512 * 1024**2), ("1GB", 10**9), ("64k", 65536), (" 2g ", 2 * 1024**3)],
)
def test_parse(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize(
    ("text", "says"),
    [("256", "no unit"), ("12X", "unknown unit"), ("abc", "not a size"), ("-1G", "not a size"),
     ("0G", "greater than zero"), ("", "not a size")],
)
def test_reject(text: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        parse_size(text, "memory")


def test_format_round_trip() -> None:
    assert format_size(256 * 1024**2) == "256M"
    assert format_size(1536 * 1024**2) == "1.5G"
    assert format_size(512) == "512B"
