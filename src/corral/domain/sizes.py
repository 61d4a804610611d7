"""Parsing and formatting of byte sizes: 512M, 1G, 1.5GiB, 2TB."""

from __future__ import annotations

import re

from corral.domain.errors import InvalidInput

_UNITS = {
    "k": 1024, "ki": 1024, "kib": 1024,
    "m": 1024**2, "mi": 1024**2, "mib": 1024**2,
    "g": 1024**3, "gi": 1024**3, "gib": 1024**3,
    "t": 1024**4, "ti": 1024**4, "tib": 1024**4,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "b": 1,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str, what: str = "size") -> int:
    """Bytes in ``text``; a unit is required (K/M/G/T are powers of 1024, KB/MB/GB of 1000)."""
    match = _SIZE.match(str(text))
    if not match:
        raise InvalidInput(f"{what} '{text}' is not a size; write e.g. 512M, 1G or 2T")
    number, unit = match.groups()
    if float(number) <= 0:
        raise InvalidInput(f"{what} '{text}' must be greater than zero")
    if not unit:
        raise InvalidInput(f"{what} '{text}' has no unit; write e.g. {text}M or {text}G")
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise InvalidInput(f"{what} '{text}' has an unknown unit '{unit}'; use K, M, G or T")
    value = int(float(number) * factor)
    if value <= 0:
        raise InvalidInput(f"{what} '{text}' must be greater than zero")
    return value


def format_size(value: int) -> str:
    """Short binary form: 268435456 -> '256M', 1610612736 -> '1.5G'."""
    for unit, factor in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if value >= factor:
            amount = value / factor
            text = f"{amount:.1f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{value}B"
