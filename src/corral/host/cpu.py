"""Host CPU facts the VM driver needs."""

from __future__ import annotations

import functools
from pathlib import Path


def parse_cpuinfo_khz(cpuinfo: str) -> int | None:
    """The first ``cpu MHz`` of ``/proc/cpuinfo`` text, in kHz."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "cpu MHz":
            try:
                return round(float(value.strip()) * 1000)
            except ValueError:
                return None
    return None


@functools.cache
def tsc_khz() -> int | None:
    """The TSC frequency in kHz: sysfs when the kernel exports it, else ``/proc/cpuinfo``
    (read once per process: it is fixed at boot, and /proc/cpuinfo costs ~0.2 ms a read)."""
    sysfs = Path("/sys/devices/system/cpu/cpu0/tsc_freq_khz")
    try:
        return int(sysfs.read_text().strip())
    except (OSError, ValueError):
        pass
    try:
        return parse_cpuinfo_khz(Path("/proc/cpuinfo").read_text())
    except OSError:
        return None
