import pytest

from corral.domain.errors import InvalidInput
from corral.domain.names import validate_name


@pytest.mark.parametrize("name", ["web1", "a", "db-1", "x" * 63])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "empty"),
        ("Web1", "DNS label"),
        ("1web", "DNS label"),
        ("web_1", "DNS label"),
        ("web-", "DNS label"),
        ("x" * 64, "longer than 63"),
        ("123", "all digits"),
        ("a b", "DNS label"),
    ],
)
def test_invalid_names_say_why(name: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        validate_name(name)
