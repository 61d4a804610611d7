"""What an instance is: identity, kind, template, resources."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from corral.domain.disks import DataDisk
from corral.domain.errors import InvalidInput
from corral.domain.resources import Resources


class Kind(StrEnum):
    CT = "ct"
    VM = "vm"

    @classmethod
    def parse(cls, value: str) -> Kind:
        aliases = {"ct": cls.CT, "container": cls.CT, "vm": cls.VM, "virtual-machine": cls.VM}
        try:
            return aliases[value.lower()]
        except KeyError:
            raise InvalidInput(f"type '{value}' is not one of: ct, vm") from None


@dataclass(frozen=True)
class InstanceSpec:
    """Everything a driver needs to realise an instance. ``directory`` is the driver's to use."""

    id: int
    name: str
    kind: Kind
    template: str
    resources: Resources
    directory: Path
    privileged: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    root_disk: Path | None = None
    """The root disk in a storage pool. When set, storage made it and storage deletes it:
    drivers neither build nor remove it. None: the driver builds ``directory/root.img``."""
    data_disks: tuple[DataDisk, ...] = ()
    """Further disks (raw ext4 images in a pool), in attach order (vdb, vdc, …)."""

    @property
    def disk_path(self) -> Path:
        return self.root_disk if self.root_disk is not None else self.directory / "root.img"

    @property
    def run_dir(self) -> Path:
        return self.directory / "run"
