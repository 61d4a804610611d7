"""The resource model shared by both kinds of instance.

Keys are the same for containers and VMs (DESIGN.md); each driver maps them to its runtime
(cgroups, QMP or both). Optional keys are ``None`` when unset: no limit of that kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any

from corral.domain.errors import InvalidInput
from corral.domain.sizes import parse_size

MIN_MEMORY = 16 * 1024**2
MIN_DISK = 8 * 1024**2
MAX_CPUS = 288
MAX_SHARES = 262144  # cgroup v1 cpu.shares maximum
MIN_SHARES = 2
DEFAULT_SHARES = 1024
MIN_IO_BPS = 4096
_CPU_LIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_CLEAR = ("", "none", "unset", "max", "unlimited")


@dataclass(frozen=True)
class Resources:
    cpus: int = 1
    memory: int = 256 * 1024**2
    disk: int = 1024**3
    cpu_limit: int | None = None  # percent of one CPU, hard cap (50 = half, 200 = two)
    cpu_shares: int | None = None  # relative weight (cgroup v1 scale, 1024 = default)
    memory_min: int | None = None  # VM: balloon floor; CT: soft limit (v1) / memory.low (v2)
    cpu_pin: str | None = None  # a host CPU list, e.g. "0-1,3"
    swap: int | None = None  # swap on top of memory (CTs; a VM's guest manages its own)
    io_read_bps: int | None = None
    io_write_bps: int | None = None
    io_iops: int | None = None  # reads and writes each
    pids: int | None = None  # containers only
    max_cpus: int | None = None  # VMs: vCPUs at boot that ``cpus`` can reach live (>= cpus)

    def to_dict(self) -> dict[str, Any]:
        # every field is a scalar: no deep copy (``asdict``) needed, and ``list`` converts
        # a thousand of these per request
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Resources:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def changed_keys(self, other: Resources) -> list[str]:
        """The keys whose value differs between ``self`` and ``other``, in declaration order."""
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]


KEYS = tuple(f.name for f in fields(Resources))
CT_ONLY = frozenset({"pids"})


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


def _whole(key: str, value: object, lowest: int = 1, highest: int | None = None) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise InvalidInput(f"{key} '{value}' is not a whole number") from None
    if number < lowest:
        raise InvalidInput(f"{key} must be at least {lowest}, not {number}")
    if highest is not None and number > highest:
        raise InvalidInput(f"{key} must be at most {highest}, not {number}")
    return number


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """'0-2,5' -> (0, 1, 2, 5); InvalidInput for anything else."""
    value = text.strip().replace(" ", "")
    if not _CPU_LIST.match(value):
        raise InvalidInput(f"cpu_pin '{text}' is not a CPU list; write e.g. 0, 0-3 or 0,2-3")
    found: set[int] = set()
    for part in value.split(","):
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if last < first:
            raise InvalidInput(f"cpu_pin range '{part}' runs backwards")
        if last >= 4096:
            raise InvalidInput(f"cpu_pin CPU {last} does not exist on any host")
        found.update(range(first, last + 1))
    return tuple(sorted(found))


def format_cpu_list(cpus: tuple[int, ...] | list[int]) -> str:
    """(0, 1, 2, 5) -> '0-2,5' (the kernel's own form)."""
    parts: list[str] = []
    ordered = sorted(set(cpus))
    start = prev = -2
    for cpu in [*ordered, -10]:
        if cpu == prev + 1:
            prev = cpu
            continue
        if start >= 0:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = cpu
    return ",".join(parts)


def _parse_value(key: str, raw: str) -> Any:
    if key == "cpus":
        return parse_cpus(raw)
    if key == "max_cpus":
        return parse_cpus(raw)
    if key in ("memory", "memory_min", "disk", "swap"):
        if key == "swap" and str(raw).strip() == "0":
            return 0
        return parse_size(raw, key)
    if key in ("io_read_bps", "io_write_bps"):
        value = parse_size(raw, key)
        if value < MIN_IO_BPS:
            raise InvalidInput(f"{key} {value} bytes/s is below the minimum of 4K")
        return value
    if key == "cpu_limit":
        return _whole(key, raw, 1, 100 * MAX_CPUS)
    if key == "cpu_shares":
        return _whole(key, raw, MIN_SHARES, MAX_SHARES)
    if key in ("io_iops", "pids"):
        return _whole(key, raw, 1)
    if key == "cpu_pin":
        return format_cpu_list(parse_cpu_list(raw))
    raise InvalidInput(f"unknown resource key '{key}'; known: {', '.join(KEYS)}")


_REQUIRED = frozenset({"cpus", "memory", "disk"})


def apply_settings(base: Resources, settings: dict[str, str]) -> Resources:
    """Return ``base`` with ``settings`` (CLI/API strings) parsed and applied; validates all.

    An optional key set to ``none`` (or ``max``, ``unlimited``, empty) is cleared.
    """
    changes: dict[str, Any] = {}
    for key, raw in settings.items():
        if key not in KEYS:
            _parse_value(key, raw)  # raises: unknown key
        if key not in _REQUIRED and str(raw).strip().lower() in _CLEAR:
            changes[key] = None
        else:
            changes[key] = _parse_value(key, str(raw))
    result = replace(base, **changes)
    validate(result)
    return result


_BYTES = frozenset({"memory", "memory_min", "disk", "swap", "io_read_bps", "io_write_bps"})


def to_settings(res: Resources) -> dict[str, str]:
    """Every key of ``res`` as the strings ``apply_settings`` reads back to the same values
    (exact bytes, ``none`` for an unset key): how an instance is made with another's
    resources (restore --as, clone)."""
    found: dict[str, str] = {}
    for key in KEYS:
        value = getattr(res, key)
        if value is None:
            found[key] = "none"
        elif key in _BYTES and not (key == "swap" and value == 0):
            found[key] = f"{value}B"
        else:
            found[key] = str(value)
    return found


def parse_assignments(items: list[str]) -> dict[str, str]:
    """['cpus=2', 'memory=1G'] -> {'cpus': '2', 'memory': '1G'}; InvalidInput otherwise."""
    found: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"'{item}' is not key=value (e.g. cpu_limit=50)")
        found[key.strip()] = value.strip()
    return found


def validate(res: Resources) -> None:
    if res.memory < MIN_MEMORY:
        raise InvalidInput(f"memory {res.memory} bytes is below the minimum of 16M")
    if res.disk < MIN_DISK:
        raise InvalidInput(f"disk {res.disk} bytes is below the minimum of 8M")
    if res.memory_min is not None and res.memory_min > res.memory:
        raise InvalidInput("memory_min must not exceed memory")


def effective_quota_percent(res: Resources, ct: bool) -> int | None:
    """The hard CPU cap in percent of one CPU: ``cpu_limit``; for a container also ``cpus``.

    A container's ``cpus`` is the parallelism it may use (cpus x 100 %), as a VM's vCPU count
    bounds its guest; the tighter of the two caps wins.
    """
    caps = [c for c in (res.cpu_limit, res.cpus * 100 if ct else None) if c is not None]
    return min(caps) if caps else None
