"""Which QEMU accelerator works here: KVM if a probe VM boots under it, else TCG.

``/dev/kvm`` existing is not enough (nested KVM such as kvm-pvm makes stock kernels spin or
die, HOST-NOTES.md), so the probe boots the template kernel without a root filesystem under
KVM: reaching the "VFS: Unable to mount root fs" panic proves the kernel ran. The answer is
cached in memory and in ``/run/corral`` (a tmpfs, so a host reboot probes again).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from corral.domain.errors import HostFailure
from corral.host.cpu import tsc_khz
from corral.host.run import require_tool, run

CACHE_FILE = Path("/run/corral/accel.json")
PROBE_MARKER = b"VFS: Unable to mount root fs"
PROBE_MEMORY_MIB = 256


@dataclass(frozen=True)
class AccelChoice:
    accel: str  # "kvm" or "tcg"
    reason: str
    probe_seconds: float = 0.0


_memo: dict[str, AccelChoice] = {}


def kvm_device_usable(path: Path = Path("/dev/kvm")) -> str | None:
    """None when ``path`` can be opened read-write, else why not."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    os.close(fd)
    return None


def probe_argv(qemu: str, kernel: Path) -> list[str]:
    khz = tsc_khz()
    append = "console=ttyS0 panic=-1 quiet" + (f" tsc_early_khz={khz}" if khz else "")
    return [
        qemu, "-machine", "microvm,acpi=on,isa-serial=on", "-accel", "kvm",
        "-m", f"{PROBE_MEMORY_MIB}M", "-nodefaults", "-no-user-config", "-display", "none",
        "-serial", "stdio", "-no-reboot", "-kernel", str(kernel), "-append", append,
    ]  # fmt: skip


def probe_kvm(kernel: Path, timeout: float = 15.0) -> AccelChoice:
    """Boot ``kernel`` under KVM until its no-root panic; KVM if it gets there in time."""
    why_not = kvm_device_usable()
    if why_not is not None:
        return AccelChoice("tcg", f"KVM unavailable ({why_not})")
    qemu = require_tool("qemu-system-x86_64", "qemu-system-x86")
    started = time.monotonic()
    try:
        proc = run(probe_argv(qemu, kernel), check=False, timeout=timeout)
    except HostFailure:
        took = time.monotonic() - started
        return AccelChoice("tcg", f"KVM probe boot did not finish within {timeout:.0f} s", took)
    took = time.monotonic() - started
    if PROBE_MARKER in proc.stdout:
        return AccelChoice("kvm", "KVM probe boot reached the kernel's root mount", took)
    said = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
    tail = said[-1] if said else f"exit {proc.returncode}"
    return AccelChoice("tcg", f"KVM probe boot failed: {tail}", took)


def choose_accel(kernel: Path, cache_file: Path | None = CACHE_FILE) -> AccelChoice:
    """The cached choice for this host boot, or a fresh probe (then cached)."""
    key = str(kernel)
    if key in _memo:
        return _memo[key]
    if cache_file is not None and cache_file.exists():
        try:
            data = json.loads(cache_file.read_text())
            choice = AccelChoice(**data)
            _memo[key] = choice
            return choice
        except (OSError, ValueError, TypeError):
            pass
    choice = probe_kvm(kernel)
    _memo[key] = choice
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(".part")
            tmp.write_text(json.dumps(asdict(choice)))
            os.replace(tmp, cache_file)
        except OSError:
            pass
    return choice
