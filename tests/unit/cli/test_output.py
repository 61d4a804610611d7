"""Table and size rendering of the CLI (pure)."""

from __future__ import annotations

from corral.cli.backups import keep_text
from corral.cli.output import plain_columns, setting_size, size


def test_plain_columns_keep_every_value_whole_and_aligned() -> None:
    long_id = "web-long-name-20261206T031219Z-7662"
    text = plain_columns(["BACKUP", "TYPE"], [[long_id, "ct"], ["b", "vm"]])
    assert text.splitlines() == [
        "BACKUP" + " " * (len(long_id) - 4) + "TYPE",
        f"{long_id}  ct",
        "b" + " " * (len(long_id) + 1) + "vm",
    ]
    assert plain_columns(["A"], []) == "A\n"
    assert plain_columns(None, [("key", "value with  spaces")]) == "key  value with  spaces\n"


def test_setting_size_shows_decimal_units_as_asked() -> None:
    assert setting_size(256 * 1000**2) == "256MB"
    assert setting_size(2 * 1000**3) == "2GB"
    assert setting_size(256 * 1024**2) == "256M"
    assert setting_size(1536 * 1024**2) == "1.5G"
    assert setting_size(1000**3 + 1) == size(1000**3 + 1) == "953.7M"
    assert setting_size(500) == "500B" and setting_size(None) == "-"


def test_keep_text_names_the_rules_or_says_all() -> None:
    assert keep_text(0, 0, 0) == "all"
    assert keep_text(3, 0, 4) == "newest 3, 4 weekly"
    assert keep_text(0, 7, 0) == "7 daily"
