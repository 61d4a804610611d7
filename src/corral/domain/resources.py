"""The resource model shared by both kinds of instance.

Keys are the same for containers and VMs (DESIGN.md); each driver maps them to its runtime.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from corral.domain.errors import InvalidInput
from corral.domain.sizes import parse_size

MIN_MEMORY = 16 * 1024**2
MIN_DISK = 8 * 1024**2
MAX_CPUS = 288


@dataclass(frozen=True)
class Resources:
    cpus: int = 1
    memory: int = 256 * 1024**2
    disk: int = 1024**3
    cpu_limit: int | None = None  # percent of one CPU, hard cap
    cpu_shares: int | None = None
    memory_min: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Resources:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def parse_cpus(value: object) -> int:
    try:
        cpus = int(str(value))
    except ValueError:
        raise InvalidInput(f"cpus '{value}' is not a whole number") from None
    if cpus < 1:
        raise InvalidInput(f"cpus must be at least 1, not {cpus}")
    if cpus > MAX_CPUS:
        raise InvalidInput(f"cpus {cpus} is more than the {MAX_CPUS} a guest can have")
    return cpus


def _parse_percent(key: str, value: object) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise InvalidInput(f"{key} '{value}' is not a whole number") from None
    if number < 1:
        raise InvalidInput(f"{key} must be at least 1, not {number}")
    return number


def apply_settings(base: Resources, settings: dict[str, str]) -> Resources:
    """Return ``base`` with ``settings`` (CLI/API strings) parsed and applied; validates all."""
    changes: dict[str, Any] = {}
    for key, raw in settings.items():
        if key == "cpus":
            changes[key] = parse_cpus(raw)
        elif key == "memory":
            changes[key] = parse_size(raw, "memory")
        elif key == "memory_min":
            changes[key] = parse_size(raw, "memory_min")
        elif key == "disk":
            changes[key] = parse_size(raw, "disk")
        elif key in ("cpu_limit", "cpu_shares"):
            changes[key] = _parse_percent(key, raw)
        else:
            raise InvalidInput(
                f"unknown resource key '{key}'; known: cpus, memory, memory_min, disk, "
                "cpu_limit, cpu_shares"
            )
    result = replace(base, **changes)
    validate(result)
    return result


def validate(res: Resources) -> None:
    if res.memory < MIN_MEMORY:
        raise InvalidInput(f"memory {res.memory} bytes is below the minimum of 16M")
    if res.disk < MIN_DISK:
        raise InvalidInput(f"disk {res.disk} bytes is below the minimum of 8M")
    if res.memory_min is not None and res.memory_min > res.memory:
        raise InvalidInput("memory_min must not exceed memory")
