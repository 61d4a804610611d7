"""Rendering for every read command: --format table|json|yaml."""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import yaml
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

console = Console()
errors = Console(stderr=True)


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


def table(columns: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None) -> None:
    out = Table(title=title, header_style="bold")
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*row)
    console.print(out)


def key_values(pairs: Sequence[tuple[str, str]]) -> None:
    out = Table(show_header=False, box=None)
    out.add_column(style="bold")
    out.add_column()
    for key, value in pairs:
        out.add_row(key, value)
    console.print(out)
