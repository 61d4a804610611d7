"""The host's local time zone by name (schedules store a zone name, not an offset, so that
they keep their wall-clock time across DST changes)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from corral.domain.errors import InvalidInput


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (e.g. ``Europe/Berlin``, ``UTC``); an unknown name is refused."""
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        raise InvalidInput(f"time zone '{name}' is not a known IANA zone name (like "
                           "Europe/Berlin or UTC)") from None


def local_zone_name(etc: Path = Path("/etc")) -> str:
    """The zone this host's local time is in: $TZ when it names a zone, else the target of the
    /etc/localtime link, else /etc/timezone, else UTC."""
    found = [os.environ.get("TZ", "").removeprefix(":")]
    localtime = etc / "localtime"
    if localtime.is_symlink():
        target = str(localtime.resolve())
        if "/zoneinfo/" in target:
            found.append(target.split("/zoneinfo/", 1)[1])
    with contextlib.suppress(OSError):
        found.append((etc / "timezone").read_text().strip())
    for name in found:
        try:
            zone(name)
        except InvalidInput:
            continue
        return name
    return "UTC"
