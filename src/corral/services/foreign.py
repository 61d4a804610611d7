"""VMs from foreign disk images or installer ISOs (``corral create --image|--iso``).

Such a VM has no Corral template: its row names the built-in pseudo-template ``@image``
(``TemplateService.get`` makes it; no real template can have that name), whose metadata says
"boot through the firmware (SeaBIOS) on q35, no guest agent, a VNC console". The disk is the
image converted to raw in a pool (``storage/foreign.py``), or a blank disk of ``--disk`` size
with the ISO copied beside the instance as ``cdrom.iso`` and booted first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from corral.domain.disks import CDROM_FILE
from corral.domain.errors import Conflict, HostFailure, InvalidInput, Unsupported
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.lifecycle import State
from corral.domain.sizes import format_size, parse_size
from corral.storage.foreign import ImageInfo, inspect_image
from corral.storage.pools.copy import clone_file

if TYPE_CHECKING:
    from corral.services.instances import InstanceService

FOREIGN_TEMPLATE = "@image"
VNC_SOCKET = "vnc.sock"  # in the instance's run/ (drivers/qemu/cmdline.VmPaths.vnc)
DEFAULT_ISO_DISK = 8 * 1024**3


def foreign_metadata() -> dict[str, Any]:
    return {
        "name": FOREIGN_TEMPLATE, "version": "1", "os": "foreign", "arch": "x86_64",
        "description": "a VM booting a foreign disk image or ISO through SeaBIOS",
        "resources": {"cpus": 1, "memory": 512 * 1024**2, "disk": DEFAULT_ISO_DISK},
        "vm": {"boot": "firmware", "machine": "q35", "agent": False},
    }


class Storage(Protocol):
    """What ``make_disk`` needs of the storage service (services/storage.InstanceDisks)."""

    def prepare_image(self, spec: InstanceSpec, source: Path, info: ImageInfo,
                      progress: Callable[[float, str], None],
                      pool_name: str | None = None) -> None: ...

    def prepare_blank(self, spec: InstanceSpec, progress: Callable[[float, str], None],
                      pool_name: str | None = None) -> None: ...


@dataclass
class ForeignSource:
    image: Path | None = None
    iso: Path | None = None
    info: ImageInfo | None = None

    def prepare(self, kind: Kind, settings: dict[str, str]) -> tuple[str, dict[str, str]]:
        """Checks before anything exists; the template name and settings to create with."""
        if (self.image is None) == (self.iso is None):
            raise InvalidInput("give one of --image FILE or --iso FILE")
        if kind is not Kind.VM:
            raise InvalidInput("--image and --iso make VMs (a container needs a Corral "
                               "template): use --type vm")
        settings = dict(settings)
        if self.image is not None:
            self.info = inspect_image(self.image)
            wanted = parse_size(settings["disk"]) if "disk" in settings else 0
            if wanted and wanted < self.info.virtual_size:
                raise InvalidInput(
                    f"--disk {format_size(wanted)} is smaller than the image "
                    f"({format_size(self.info.virtual_size)}); disks do not shrink"
                )
            settings["disk"] = str(max(wanted, self.info.virtual_size)) + "B"
        else:
            assert self.iso is not None
            if not self.iso.is_absolute():
                raise InvalidInput(f"ISO '{self.iso}': give an absolute path (corrald "
                                   "reads it on its own host)")
            if not self.iso.is_file():  # the CLI made it absolute: it is missing there
                raise InvalidInput(f"ISO '{self.iso}' is not a file on the daemon's host")
        return FOREIGN_TEMPLATE, settings

    def make_disk(self, storage: Storage, spec: InstanceSpec,
                  progress: Callable[[float, str], None], pool: str | None) -> None:
        if self.image is not None:
            assert self.info is not None
            storage.prepare_image(spec, self.image, self.info, progress, pool)
            return
        assert self.iso is not None
        progress(0.0, "copying the ISO")
        clone_file(self.iso, spec.directory / CDROM_FILE)
        storage.prepare_blank(spec, progress, pool)


def vnc_socket(instances: InstanceService, ref: str) -> Path:
    """The VNC server of a running firmware-booted VM (a Unix socket on this host)."""
    view = instances.get(ref)
    rec = view.record
    if rec.kind is not Kind.VM or rec.template != FOREIGN_TEMPLATE:
        raise Unsupported(f"'{rec.name}' has no VNC console: only VMs from --image/--iso get "
                          "a graphics card; use `corral console` (serial)")
    if view.state not in (State.RUNNING, State.SUSPENDED):
        raise Conflict(f"'{rec.name}' is {view.state.value}; start it first")
    found = instances.spec(rec).run_dir / VNC_SOCKET
    if not found.exists():
        raise HostFailure(f"the VNC socket of '{rec.name}' is missing ({found})")
    return found
