"""Data disks of instances: add, remove, grow, list (``corral disk …``).

Images live in a storage pool (by default the pool of the instance's root disk) as
``volumes/<id>/<disk>.img``, each an ext4 filesystem Corral made. A stopped instance gets
every change at once (grow: file + offline ``resize2fs``); a running one through its driver's
``DiskHotplug`` (a VM: QMP on q35/pc; a container: at the next start) and the answer says
which. Removal from a running guest that cannot let go is refused, never done behind its back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from corral.domain.disks import (
    MAX_DATA_DISKS,
    ROOT,
    DataDisk,
    check_grow,
    validate_disk_name,
    validate_mount,
    validate_new_size,
)
from corral.domain.errors import Conflict, InvalidInput, NotFound, Unsupported
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.lifecycle import State
from corral.domain.sizes import format_size
from corral.drivers.base import Applied, KeyChange, RuntimeState
from corral.drivers.disks import DiskHotplug
from corral.host.diskgrow import filesystem_bytes, grow_ext4_offline, grow_file
from corral.services.events import EventBus
from corral.services.faults import fault_point
from corral.services.instances import InstanceService
from corral.services.storage import StorageService
from corral.state.storagestore import DiskRecord
from corral.state.store import InstanceRecord
from corral.storage.images import make_data_disk

_RUNNING = (State.RUNNING, State.SUSPENDED)
_STATES = {RuntimeState.RUNNING: State.RUNNING, RuntimeState.SUSPENDED: State.SUSPENDED,
           RuntimeState.STOPPED: State.STOPPED}


@dataclass(frozen=True)
class DiskInfo:
    record: DiskRecord
    path: Path
    size: int  # the image file now
    allocated: int
    filesystem: int | None  # the ext4 inside, when it is one


@dataclass(frozen=True)
class DiskChange:
    disk: str
    applied: str  # "now" (stopped), "live", "next start"
    note: str = ""


class DiskService:
    def __init__(self, instances: InstanceService, storage: StorageService,
                 events: EventBus,
                 admit: Callable[[int, int], AbstractContextManager[None]] | None = None,
                 ) -> None:
        self.instances = instances
        self.admit = admit or (lambda old, new: nullcontext())
        """The over-commitment check for a data disk going from old to new bytes
        (services/capacity), held while the change is recorded."""
        self.storage = storage
        self.events = events

    # Views ------------------------------------------------------------------------------
    def list(self, ref: str) -> list[DiskInfo]:
        rec = self.instances.store.get_instance(ref)
        found = []
        for disk, path in self.storage.disks(rec.id):
            st = path.stat() if path.exists() else None
            found.append(DiskInfo(disk, path, st.st_size if st else disk.size,
                                  st.st_blocks * 512 if st else 0,
                                  filesystem_bytes(path) if st else None))
        return found

    # Changes ----------------------------------------------------------------------------
    def add(self, ref: str, name: str, size: int, pool: str | None = None,
            mount: str | None = None) -> DiskChange:
        validate_disk_name(name)
        validate_new_size(size)
        rec = self.instances.store.get_instance(ref)
        if mount is not None:
            if rec.kind is Kind.VM:
                raise InvalidInput("--path applies to containers (a VM mounts its disks itself)")
            mount = validate_mount(mount)
        with self._locked(rec) as state:
            disks = self.storage.store.disks(rec.id)
            root, free = _slot(rec, disks, name)
            if mount is not None and any(d.mount == mount for d in disks):
                raise Conflict(f"another disk of '{rec.name}' is mounted at {mount}")
            target = self.storage.pool(pool or root.pool)
            path = target.volume(rec.id, name)
            record = DiskRecord(rec.id, name, free[0], target.name, size, mount=mount)
            with self.admit(0, size):  # the row claims the space; mkfs runs after the locks
                self.storage.store.insert_disk(record)
            try:
                fault_point("disk_add.after_row")  # a row, no image yet
                make_data_disk(path, size, name)
            except BaseException:
                self.storage.store.delete_disk(rec.id, name)
                raise
            try:
                fault_point("disk_add.after_file")  # the row and the image, not attached
                change = self._attach(rec, state, name)
            except BaseException:
                self.storage.store.delete_disk(rec.id, name)
                path.unlink(missing_ok=True)
                raise
        self.events.publish("instance.disk.added", instance=rec.name, disk=name, size=size,
                            applied=change.applied)
        return change

    def _attach(self, rec: InstanceRecord, state: State, name: str) -> DiskChange:
        spec, disk = self._spec_disk(rec, name)
        if state not in _RUNNING:
            return DiskChange(name, "now", "attached from the next start")
        driver = self.instances.driver(rec.kind)
        if not isinstance(driver, DiskHotplug):
            return DiskChange(name, Applied.NEXT_START.value,
                              f"the {rec.kind.value} driver attaches disks at start only")
        return _change(driver.attach_disk(spec, disk))

    def remove(self, ref: str, name: str) -> DiskChange:
        rec = self.instances.store.get_instance(ref)
        with self._locked(rec) as state:
            spec, disk = self._spec_disk(rec, name)
            change = DiskChange(name, "now")
            if state in _RUNNING:
                driver = self.instances.driver(rec.kind)
                if not isinstance(driver, DiskHotplug):
                    raise Conflict(f"'{rec.name}' is running; stop it to remove disk '{name}'")
                change = _change(driver.detach_disk(spec, disk))
            disk.path.unlink(missing_ok=True)
            self.storage.store.delete_disk(rec.id, name)
        self.events.publish("instance.disk.removed", instance=rec.name, disk=name)
        return change

    def resize(self, ref: str, name: str, size: int) -> DiskChange:
        rec = self.instances.store.get_instance(ref)
        if name == ROOT:
            raise InvalidInput(f"the root disk grows with `corral set {rec.name} disk=SIZE`")
        with self._locked(rec) as state:
            spec, disk = self._spec_disk(rec, name)
            current = disk.path.stat().st_size
            check_grow(name, current, size)
            if size == current and disk.size == size and (
                    state in _RUNNING or not _fs_behind(disk.path, size)):
                return DiskChange(name, "now", f"already {format_size(size)}")
            with self.admit(min(current, disk.size), size):
                grow_file(disk.path, size)
                fault_point("disk_resize.after_grow")
                self.storage.store.set_disk_size(rec.id, name, size, None)
            fault_point("disk_resize.after_row")
            if state not in _RUNNING:  # (again, after a resize cut short: ext4 grows once)
                grow_ext4_offline(disk.path)
                change = DiskChange(name, "now", "image and ext4 filesystem grown")
            else:
                driver = self.instances.driver(rec.kind)
                if isinstance(driver, DiskHotplug):
                    change = _change(driver.resize_disk(spec, disk, size))
                else:
                    change = DiskChange(name, Applied.NEXT_START.value, "image grown")
        self.events.publish("instance.disk.resized", instance=rec.name, disk=name, size=size,
                            applied=change.applied)
        return change

    # Snapshot reverts and backup restores ---------------------------------------------------
    def bring_back(self, rec: InstanceRecord, name: str, size: int, mount: str | None = None,
                   index: int | None = None, pool: str | None = None) -> Path:
        """Register a data disk that a snapshot revert or a backup restore brings back (the
        caller holds the instance lock, writes the image to the returned path, and calls
        ``drop`` if that fails). Its index and pool are kept where still free/present, else
        the lowest free index and the root disk's pool; the over-commitment check applies."""
        validate_disk_name(name)
        disks = self.storage.store.disks(rec.id)
        root, free = _slot(rec, disks, name)
        if rec.kind is Kind.VM:
            mount = None
        elif mount is not None and any(d.mount == validate_mount(mount) for d in disks):
            raise Conflict(f"another disk of '{rec.name}' is mounted at {mount}; cannot bring "
                           f"back disk '{name}' there")
        try:
            target = self.storage.pool(pool or root.pool)
        except NotFound:
            target = self.storage.pool(root.pool)
        path = target.volume(rec.id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.admit(0, size):
            self.storage.store.insert_disk(DiskRecord(
                rec.id, name, index if index in free else free[0], target.name, size,
                mount=mount))
        return path

    def drop(self, rec: InstanceRecord, name: str, path: Path) -> None:
        """Undo ``bring_back``: the row and the image go."""
        path.unlink(missing_ok=True)
        self.storage.store.delete_disk(rec.id, name)

    def set_size(self, rec: InstanceRecord, name: str, size: int) -> None:
        """A revert or restore replaced the image of disk ``name`` with one of ``size``."""
        self.storage.store.set_disk_size(rec.id, name, size, None)

    # Helpers ----------------------------------------------------------------------------
    def _spec_disk(self, rec: InstanceRecord, name: str) -> tuple[InstanceSpec, DataDisk]:
        spec = self.instances.spec(rec)
        disk = next((d for d in spec.data_disks if d.name == name), None)
        if disk is None:
            if name == ROOT:
                raise InvalidInput("the root disk cannot be removed")
            known = ", ".join(d.name for d in spec.data_disks) or "none"
            raise NotFound(f"'{rec.name}' has no data disk '{name}'; data disks: {known}")
        return spec, disk

    @contextmanager
    def _locked(self, rec: InstanceRecord) -> Iterator[State]:
        """The instance lock (Busy while an operation holds it) and its state now."""
        locks = self.instances.ops.locks
        token = f"disk-{uuid.uuid4()}"
        locks.acquire(rec.name, token, "disk")
        try:
            if rec.state in (State.CREATING, State.DELETING):
                raise Conflict(f"'{rec.name}' is {rec.state.value}")
            runtime = self.instances.driver(rec.kind).status(self.instances.spec(rec)).state
            if runtime is RuntimeState.MISSING:
                raise Conflict(f"'{rec.name}' has no runtime on this host")
            yield _STATES[runtime]
        finally:
            locks.release(rec.name, token)


def _change(key: KeyChange) -> DiskChange:
    return DiskChange(key.key, key.applied.value, key.note)


def _slot(rec: InstanceRecord, disks: list[DiskRecord], name: str) -> tuple[DiskRecord, list[int]]:
    """For a new data disk ``name``: the root disk (whose pool is the default) and the free
    indexes, lowest first; refused when the name is taken or every index is."""
    root = next((d for d in disks if d.root), None)
    if root is None:
        raise Unsupported(f"'{rec.name}' has no disks in a storage pool")
    if any(d.name == name for d in disks):
        raise Conflict(f"'{rec.name}' already has a disk named '{name}'")
    used = {d.idx for d in disks}
    free = [i for i in range(1, MAX_DATA_DISKS + 1) if i not in used]
    if not free:
        raise Conflict(f"'{rec.name}' has {MAX_DATA_DISKS} data disks, the most allowed")
    return root, free


def _fs_behind(path: Path, size: int) -> bool:
    """A stopped disk's ext4 smaller than its image by more than a few MiB: a resize that was
    cut short after growing the image (grown again now; resize2fs once)."""
    fs = filesystem_bytes(path)
    return fs is not None and size - fs > 4 * 1024**2
