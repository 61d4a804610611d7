"""Byte and packet counters of a host network interface (sysfs)."""

from __future__ import annotations

from pathlib import Path

SYS_NET = Path("/sys/class/net")


def counters(ifname: str, root: Path = SYS_NET) -> dict[str, int]:
    """rx/tx bytes and packets of ``ifname`` as the host sees them; zeros when it is gone."""
    found = {}
    for key in ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets"):
        try:
            found[key] = int((root / ifname / "statistics" / key).read_text())
        except (OSError, ValueError):
            found[key] = 0
    return found


def byte_counters(ifname: str, root: str = str(SYS_NET)) -> tuple[int, int]:
    """(rx_bytes, tx_bytes) of ``ifname`` only: two reads with plain string paths (stats and
    /metrics read these for every NIC of a thousand instances); zeros when it is gone."""
    found = []
    for key in ("rx_bytes", "tx_bytes"):
        try:
            with open(f"{root}/{ifname}/statistics/{key}", "rb") as handle:
                found.append(int(handle.read()))
        except (OSError, ValueError):
            found.append(0)
    return found[0], found[1]
