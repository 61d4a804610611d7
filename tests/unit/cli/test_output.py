"""Table and size rendering of the CLI (pure)."""

from __future__ import annotations

import pytest
import typer

from corral.cli import output
from corral.cli.backups import keep_text
from corral.cli.common import fail
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


def test_a_mac_address_and_a_message_in_brackets_print_as_they_are(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Rich read ":ab:" in 02:c0:9c:ab:13:8f as an emoji code (a flaky clone test) and
    "[name]" in a server's message as markup."""
    output.console.print("new MAC 02:c0:9c:ab:13:8f", highlight=False)
    with pytest.raises(typer.Exit):
        fail("no instance [web:ab:1]")
    said = capsys.readouterr()
    assert "02:c0:9c:ab:13:8f" in said.out
    assert "no instance [web:ab:1]" in said.err
