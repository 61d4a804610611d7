"""Rendering for every read command: --format table|json|yaml.

Tables are for people: on a terminal a Rich table that fits the width, where ids and names
are never cut (other columns wrap); anywhere else (a pipe, a file) plain columns with every
value in full, so that ``corral list | grep NAME`` and ``$(corral backup list … | …)`` see
what the daemon said.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import yaml
from pydantic import BaseModel
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

# No emoji codes: Rich turned ":ab:" in a MAC address (02:c0:9c:ab:13:8f) into an emoji
# (a flaky test: the MACs are random). Markup stays for Corral's own [bold] words; text that
# came from elsewhere (an error's message) is escaped where it is put into markup.
console = Console(emoji=False)
console.soft_wrap = not console.is_terminal  # piped: a message is never wrapped either
errors = Console(stderr=True, emoji=False)

# Columns that name or identify something: shown whole even on a narrow terminal.
WHOLE = frozenset({"ID", "NAME", "BACKUP", "INSTANCE", "SNAPSHOT", "TARGET", "NETWORK",
                   "POOL", "CLASS", "NIC", "KEY", "RESOURCE", "FEATURE", "USER"})


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


def size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, factor in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if value >= factor:
            text = f"{value / factor:.1f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{value}B"


DECIMAL = (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("KB", 1000))


def setting_size(value: int | None) -> str:
    """A size someone set (memory, disk): as it was asked where the parser allows no doubt.

    ``--memory 256MB`` is 256,000,000 bytes, which is no round binary size: shown as
    "256MB", not "244.1M". Whole binary sizes keep the short binary form ("256M", "1.5G").
    """
    if value is None:
        return "-"
    for _unit, factor in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if value >= factor:
            if value * 10 % factor == 0:  # exact at one decimal: "1.5G"
                return size(value)
            break
    for unit, factor in DECIMAL:
        if value >= factor and value % factor == 0:
            return f"{value // factor}{unit}"
    return size(value)


def _plain(data: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, dict):
        return data
    return [item.model_dump(mode="json") for item in data]


def emit_structured(data: BaseModel | Sequence[BaseModel] | dict[str, Any], fmt: Format) -> bool:
    """Print json/yaml and return True, or return False for the caller's table."""
    if fmt is Format.json:
        print(json.dumps(_plain(data), indent=2))
        return True
    if fmt is Format.yaml:
        print(yaml.safe_dump(_plain(data), sort_keys=False), end="")
        return True
    return False


def to_terminal() -> bool:
    return console.is_terminal


def plain_columns(columns: Sequence[str] | None, rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, nothing cut, no trailing blanks."""
    lines = ([list(columns)] if columns is not None else []) + [list(r) for r in rows]
    if not lines:
        return ""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        + "\n" for line in lines)


def _fits(drawn: Table) -> bool:
    """Whether the table's narrowest form (whole ids and names) fits the terminal."""
    unbounded = console.options.update_width(1 << 20)
    return Measurement.get(console, unbounded, drawn).minimum <= console.width


def table(columns: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None) -> None:
    drawn = rich_table(columns, rows, title) if to_terminal() else None
    if drawn is None or not _fits(drawn):
        # a pipe, or whole ids would not fit: plain lines (a terminal wraps them, uncut)
        print((f"{title}\n" if title else "") + plain_columns(columns, rows), end="")
        return
    console.print(drawn)


def fitting(columns: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None,
            **options: Any) -> RenderableType:
    """For a live view on a terminal: the Rich table, or plain lines that wrap (never cut)
    when the whole ids would not fit."""
    drawn = rich_table(columns, rows, title, **options)
    if _fits(drawn):
        return drawn
    return Text((f"{title}\n" if title else "") + plain_columns(columns, rows),
                overflow="fold")


def rich_table(columns: Sequence[str], rows: Sequence[Sequence[str]],
               title: str | None = None, **options: Any) -> Table:
    """A Rich table whose identifying columns (``WHOLE``) keep their full width."""
    out = Table(title=title, header_style="bold", **options)
    for index, column in enumerate(columns):
        if column in WHOLE:
            longest = max([len(column), *(len(row[index]) for row in rows)])
            out.add_column(column, no_wrap=True, min_width=longest)
        else:
            out.add_column(column)
    for row in rows:
        out.add_row(*row)
    return out


def key_values(pairs: Sequence[tuple[str, str]]) -> None:
    if not to_terminal():
        print(plain_columns(None, pairs), end="")
        return
    out = Table(show_header=False, box=None)
    out.add_column(style="bold")
    out.add_column()
    for key, value in pairs:
        out.add_row(key, value)
    console.print(out)


def warn(message: str) -> None:
    """A warning on stderr (a table on stdout stays clean for pipes)."""
    errors.print(f"[yellow]warning:[/] {escape(message)}", markup=True, highlight=False)
