"""What a running VM's QEMU holds beyond its guest's RAM: QEMU itself, TCG's translation
buffer, the kernel and initrd it read, device buffers -- the per-VM cost ``corral
capacity`` charges on top of a VPS's memory.

The guest's RAM is the ``memory-backend-ram`` (id ``ram``) of QEMU's command line: one
anonymous, not executable mapping of exactly its size (TCG's code buffer can have the same
size, but is executable). The overhead is the process's PSS (shared pages split between
their sharers: a template's kernel read by ten VMs counts a tenth in each) less that
mapping's. The cgroup charge above the guest's size (the other measure) is 0 for an idle
guest that has not touched its RAM, however much QEMU holds. Two file reads, no process.
"""

from __future__ import annotations

from pathlib import Path

from corral.domain.errors import InvalidInput
from corral.domain.sizes import parse_size

PROC = Path("/proc")


def guest_ram(cmdline: list[str]) -> int | None:
    """The size of the ``memory-backend-ram`` with id ``ram`` in QEMU's arguments."""
    for index, arg in enumerate(cmdline[:-1]):
        if arg != "-object" or not cmdline[index + 1].startswith("memory-backend-ram,"):
            continue
        options = dict(part.split("=", 1) for part in cmdline[index + 1].split(",")[1:]
                       if "=" in part)
        if options.get("id") == "ram" and "size" in options:
            try:
                return parse_size(options["size"])
            except InvalidInput:
                return None
    return None


def pss_beyond(smaps: str, ram: int) -> int | None:
    """Bytes of PSS outside the guest RAM mapping (``ram`` bytes, anonymous, not executable)
    in a ``/proc/PID/smaps`` text; None when no such mapping is there."""
    total = guest = 0
    found = False
    size_kib = ram // 1024
    candidate = False
    for line in smaps.splitlines():
        fields = line.split()
        if not fields:
            continue
        if "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's header
            perms, path = fields[1], fields[5] if len(fields) > 5 else ""
            candidate = not found and "x" not in perms and not path
            continue
        if fields[0] == "Size:" and candidate:
            candidate = int(fields[1]) == size_kib
        elif fields[0] == "Pss:":
            kib = int(fields[1])
            total += kib
            if candidate:
                guest, found, candidate = kib, True, False
    return (total - guest) * 1024 if found else None


def overhead(pid: int, proc: Path = PROC) -> int | None:
    """The memory QEMU process ``pid`` holds beyond its guest's RAM; None when it is gone or
    is not a QEMU with a ``ram`` memory backend."""
    try:
        cmdline = (proc / str(pid) / "cmdline").read_bytes().decode(errors="replace")
        ram = guest_ram(cmdline.split("\0"))
        if ram is None:
            return None
        return pss_beyond((proc / str(pid) / "smaps").read_text(errors="replace"), ram)
    except OSError:
        return None
