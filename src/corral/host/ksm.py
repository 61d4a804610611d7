"""Kernel samepage merging (KSM): whether this kernel has it, what it saves, switching it.

KSM merges identical pages of memory areas marked mergeable (QEMU marks guest RAM so by
default: ``-machine mem-merge=on``); many VMs booted from one template share their kernel
and page cache pages. ``/sys/kernel/mm/ksm`` exists only where the kernel was built with it:
detected, never assumed. ``run``: 0 stops merging (merged pages stay merged), 1 merges;
writing it needs root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.domain.errors import HostFailure, Unsupported

KSM = Path("/sys/kernel/mm/ksm")


@dataclass(frozen=True)
class KsmStatus:
    available: bool
    running: bool = False
    pages_shared: int = 0
    """Pages KSM keeps (one copy each)."""
    pages_sharing: int = 0
    """Pages that point at one of those instead of holding their own copy: the saving."""
    page_size: int = 4096
    detail: str = ""

    @property
    def saved_bytes(self) -> int:
        return self.pages_sharing * self.page_size

    def to_dict(self) -> dict[str, Any]:
        return {"available": self.available, "running": self.running,
                "pages_shared": self.pages_shared, "pages_sharing": self.pages_sharing,
                "saved_mib": round(self.saved_bytes / 2**20, 1), "detail": self.detail}


def _number(root: Path, name: str) -> int:
    try:
        return int((root / name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def status(root: Path = KSM) -> KsmStatus:
    if not (root / "run").is_file():
        return KsmStatus(False, detail="this kernel has no KSM (no /sys/kernel/mm/ksm)")
    running = _number(root, "run") == 1
    shared, sharing = _number(root, "pages_shared"), _number(root, "pages_sharing")
    page = os.sysconf("SC_PAGE_SIZE")
    saved = sharing * page / 2**20
    detail = (f"merging: {saved:.1f} MiB saved" if running
              else "off (corral host policy ksm=on)")
    return KsmStatus(True, running, shared, sharing, page, detail)


def set_running(on: bool, root: Path = KSM) -> None:
    """Merge (``on``) or stop merging; merged pages stay merged when it stops."""
    if not (root / "run").is_file():
        raise Unsupported("this kernel has no KSM (no /sys/kernel/mm/ksm)")
    try:
        (root / "run").write_text("1" if on else "0")
    except OSError as exc:
        raise HostFailure(f"cannot switch KSM {'on' if on else 'off'}: {exc}") from exc
