"""An unpacked template as drivers see it: a root filesystem archive, a kernel, metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METADATA = "metadata.json"
ROOTFS = "rootfs.tar.gz"
KERNEL = "vmlinux"
INITRD = "initrd.img"


@dataclass(frozen=True)
class TemplateImage:
    name: str
    directory: Path
    metadata: dict[str, Any]

    @classmethod
    def load(cls, directory: Path) -> TemplateImage:
        data = json.loads((directory / METADATA).read_text())
        return cls(name=str(data["name"]), directory=directory, metadata=data)

    @property
    def rootfs(self) -> Path:
        return self.directory / ROOTFS

    @property
    def kernel(self) -> Path:
        return self.directory / KERNEL

    @property
    def initrd(self) -> Path:
        return self.directory / INITRD

    @property
    def ct_halt_signal(self) -> str:
        return str(self.metadata.get("ct", {}).get("halt_signal", "SIGPWR"))

    @property
    def vm_cmdline(self) -> str:
        return str(self.metadata.get("vm", {}).get("cmdline", "console=ttyS0"))

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "0"))
