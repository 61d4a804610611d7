"""Storage pools, the per-template base image cache, and instance disks in pools.

Create from a template = clone the template's cached base image (an ext4 filesystem built
once per template content with ``mkfs.ext4 -d``) into the pool, then grow it offline to the
requested size: a reflink where the pool shares extents, a sparse copy otherwise. The base
image is unshifted (ids as in the template), so one base serves containers and VMs alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from corral.domain.disks import DataDisk
from corral.domain.errors import Conflict, CorralError, InvalidInput, NotFound, Unsupported
from corral.domain.instance import InstanceSpec
from corral.domain.names import validate_name
from corral.domain.pools import PoolConfig
from corral.domain.sizes import format_size
from corral.host.diskgrow import grow_ext4_offline
from corral.host.run import run
from corral.services.events import EventBus
from corral.state.storagestore import DiskRecord, PoolRecord, StorageStore
from corral.storage.foreign import ImageInfo, import_image
from corral.storage.images import PARTIAL, build_root_disk
from corral.storage.pools import Pool, PoolUsage, clone_file, open_pool
from corral.templates.artifact import artifact_digest
from corral.templates.image import TemplateImage

log = logging.getLogger("corral.storage")
POOL_FIGURES_TTL = 30.0
"""Seconds /metrics reuses pools' usage figures (``StorageService.pool_figures``)."""

Progress = Callable[[float, str], None]
DEFAULT_POOL = "default"
DEFAULT_BTRFS_SIZE = 64 * 1024**3
"""The default pool's backing file (sparse: it takes only what is written)."""
ROOT = "root"


def _quiet(fraction: float, phase: str) -> None:
    del fraction, phase


class InstanceDisks(Protocol):
    """What InstanceService asks of storage (a no-op without pools: drivers build disks)."""

    def attach(self, spec: InstanceSpec) -> InstanceSpec: ...

    def attach_all(self, specs: list[InstanceSpec]) -> list[InstanceSpec]:
        """``attach`` of many in one query (``list`` of a thousand)."""
        ...

    def prepare(self, spec: InstanceSpec, image: TemplateImage, progress: Progress,
                pool_name: str | None = None) -> None: ...

    def prepare_image(self, spec: InstanceSpec, source: Path, info: ImageInfo,
                      progress: Progress, pool_name: str | None = None) -> None: ...

    def prepare_blank(self, spec: InstanceSpec, progress: Progress,
                      pool_name: str | None = None) -> None: ...

    def release(self, spec: InstanceSpec) -> None: ...

    # An instance migrating in (services/migration/target.py) and out (source.py).
    def receive_root(self, instance_id: int, size: int) -> None:
        """An arriving root disk goes where a new instance's would: the default pool (with
        pools), else the instance directory (nothing to do)."""
        ...

    def receive_data_disk(self, instance_id: int, name: str, index: int, size: int,
                          pending_size: int | None, mount: str | None) -> Path:
        """Record an arriving data disk in the default pool; returns the path its image
        goes to (its directory made)."""
        ...

    def pending_sizes(self, instance_id: int) -> dict[str, int | None]:
        """Per disk, a grow due at its next start (a container's ext4), to move with it."""
        ...


class NoDisks:
    def attach(self, spec: InstanceSpec) -> InstanceSpec:
        return spec

    def attach_all(self, specs: list[InstanceSpec]) -> list[InstanceSpec]:
        return specs

    def prepare(self, spec: InstanceSpec, image: TemplateImage, progress: Progress,
                pool_name: str | None = None) -> None:
        if pool_name is not None:
            raise Unsupported("this daemon keeps no storage pools; --pool is not possible")
        del spec, image, progress

    def prepare_image(self, spec: InstanceSpec, source: Path, info: ImageInfo,
                      progress: Progress, pool_name: str | None = None) -> None:
        raise Unsupported("this daemon keeps no storage pools; foreign images need one")

    def prepare_blank(self, spec: InstanceSpec, progress: Progress,
                      pool_name: str | None = None) -> None:
        raise Unsupported("this daemon keeps no storage pools; ISO installs need one")

    def release(self, spec: InstanceSpec) -> None:
        del spec

    def receive_root(self, instance_id: int, size: int) -> None:
        del instance_id, size

    def receive_data_disk(self, instance_id: int, name: str, index: int, size: int,
                          pending_size: int | None, mount: str | None) -> Path:
        raise Unsupported("this host has no storage pools for the instance's data disks")

    def pending_sizes(self, instance_id: int) -> dict[str, int | None]:
        del instance_id
        return {}


BASE_LAYOUT = "g16t"
"""Bumped when build_root_disk's file-system layout changes: a base image built by an older
layout (1 KiB blocks: no growth past ~1 TiB) is rebuilt instead of cloned."""


def base_key(image: TemplateImage) -> str:
    return f"{image.name}-{artifact_digest(image.metadata)[:16]}-{BASE_LAYOUT}"


@dataclasses.dataclass(frozen=True)
class PoolStatus:
    record: PoolRecord
    usage: PoolUsage
    cow: bool
    active: bool
    volumes: int


class StorageService:
    def __init__(self, store: StorageStore, state_dir: Path, driver_mode: str,
                 events: EventBus | None = None) -> None:
        self.store = store
        self.events = events if events is not None else EventBus()
        self.state_dir = state_dir
        self.driver_mode = driver_mode
        self._building = threading.Lock()
        """Held while a base image is built: concurrent first creates of one template wait
        for the one build instead of racing on its file."""
        self._attached: dict[
            int, tuple[InstanceSpec, list[tuple[DiskRecord, PoolConfig]], InstanceSpec]] = {}
        """``attach_all``'s last answer per instance id: (bare spec, its disks, attached)."""
        self._figures: tuple[float, list[tuple[str, str, PoolUsage | None, int]]] | None = None
        self._figures_lock = threading.Lock()

    # Pools --------------------------------------------------------------------------------
    def pool(self, name: str) -> Pool:
        return open_pool(self.store.get_pool(name).config)

    def default_pool(self) -> Pool:
        record = self.store.default_pool()
        if record is None:
            raise NotFound("no default storage pool; create one with corral storage create")
        return open_pool(record.config)

    def list_pools(self) -> list[PoolRecord]:
        return self.store.list_pools()

    def status(self, record: PoolRecord) -> PoolStatus:
        """What a pool is and holds now: usage, copy-on-write, volume count."""
        pool = open_pool(record.config)
        return PoolStatus(record=record, usage=pool.usage(), cow=pool.cow(), active=pool.active,
                          volumes=len(self.store.disks_in_pool(record.config.name)))

    def pool_figures(self) -> list[tuple[str, str, PoolUsage | None, int]]:
        """(name, driver, usage or None if it cannot be read now, volumes) of every pool, for
        /metrics: one pool that cannot be read must not fail the whole scrape. A dir pool's
        usage walks its files (~0.1 s at 1000 instances), so the figures are kept for
        ``POOL_FIGURES_TTL`` seconds: a scrape every 15 s walks at most every 30 s."""
        now = time.monotonic()
        with self._figures_lock:
            if self._figures is not None and now - self._figures[0] < POOL_FIGURES_TTL:
                return self._figures[1]
            self._figures = (now, self._read_pool_figures())
            return self._figures[1]

    def _read_pool_figures(self) -> list[tuple[str, str, PoolUsage | None, int]]:
        found: list[tuple[str, str, PoolUsage | None, int]] = []
        for record in self.list_pools():
            usage: PoolUsage | None
            try:
                usage = open_pool(record.config).usage()
            except (CorralError, OSError) as exc:
                log.warning("pool %s: usage unreadable: %s", record.config.name, exc)
                usage = None
            found.append((record.config.name, record.config.driver, usage,
                          len(self.store.disks_in_pool(record.config.name))))
        return found

    def setup(self) -> None:
        """At daemon start: make the default pool once, then activate every pool."""
        if self.store.default_pool() is None:
            self._make_default()
        for record in self.store.list_pools():
            try:
                open_pool(record.config).activate()
            except Exception as exc:  # one broken pool must not keep the daemon down
                log.error("storage pool %s is unavailable: %s", record.config.name, exc)

    def _make_default(self) -> None:
        base = self.state_dir / "pools"
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(base.stat().st_mode | 0o111)
        if self.driver_mode == "real" and shutil.which("mkfs.btrfs"):
            size = min(DEFAULT_BTRFS_SIZE, _free_bytes(base))
            config = PoolConfig(DEFAULT_POOL, "btrfs", base / DEFAULT_POOL,
                                source=base / f"{DEFAULT_POOL}.btrfs", size=size)
            try:
                open_pool(config).create()
                self.store.insert_pool(config, default=True)
                log.info("default pool: btrfs on a loop-backed file (%s)", config.source)
                return
            except Exception as exc:
                log.warning("no btrfs default pool (%s); using a directory pool", exc)
        config = PoolConfig(DEFAULT_POOL, "dir", base / DEFAULT_POOL)
        open_pool(config).create()
        self.store.insert_pool(config, default=True)

    def close(self) -> None:
        """At daemon stop: unmount pools nothing uses (a running guest keeps its pool)."""
        for record in self.store.list_pools():
            try:
                open_pool(record.config).deactivate()
            except Conflict as exc:
                log.info("%s", exc)
            except Exception as exc:
                log.warning("deactivating pool %s: %s", record.config.name, exc)

    def create_pool(self, name: str, driver: str, path: str | None, source: str | None,
                    size: int | None) -> PoolRecord:
        validate_name(name, "pool")
        if driver not in ("dir", "btrfs"):
            raise InvalidInput(f"pool driver '{driver}' is not one of: dir, btrfs")
        with contextlib.suppress(NotFound):
            self.store.get_pool(name)
            raise Conflict(f"storage pool '{name}' already exists")
        where = Path(path) if path else self.state_dir / "pools" / name
        if driver == "dir":
            if where.exists() and any(where.iterdir()):
                raise Conflict(f"{where} is not empty; give a new or empty directory")
            config = PoolConfig(name, "dir", where)
        else:
            backing = Path(source) if source else self.state_dir / "pools" / f"{name}.btrfs"
            if where.exists() and any(where.iterdir()):
                raise Conflict(f"mount point {where} is not empty")
            config = PoolConfig(name, "btrfs", where, source=backing, size=size)
        pool = open_pool(config)
        pool.create()
        try:
            record = self.store.insert_pool(config)
        except BaseException:
            pool.destroy()
            raise
        self.events.publish("storage.pool.created", pool=name, driver=driver)
        return record

    def delete_pool(self, name: str) -> None:
        record = self.store.get_pool(name)
        users = self.store.disks_in_pool(name)
        if users:
            ids = sorted({d.instance_id for d in users})
            raise Conflict(f"pool '{name}' holds disks of instances {ids}; delete them first")
        if record.default:
            raise Conflict(f"pool '{name}' is the default pool")
        open_pool(record.config).destroy()
        self.store.delete_pool(name)
        self.events.publish("storage.pool.deleted", pool=name)

    # Base images --------------------------------------------------------------------------
    def base_image(self, pool: Pool, image: TemplateImage, progress: Progress = _quiet) -> Path:
        """The template's root filesystem as an ext4 image in ``pool``: built once (at the
        template's default disk size), then reused for every create and both kinds."""
        path = pool.base(base_key(image))
        if path.is_file():
            return path
        with self._building:
            return self._build_base(pool, image, path, progress)

    def _build_base(self, pool: Pool, image: TemplateImage, path: Path,
                    progress: Progress) -> Path:
        if path.is_file():  # built while this create waited
            return path
        # The same content in an older layout: unused once this one exists.
        pool.base(f"{image.name}-{artifact_digest(image.metadata)[:16]}").unlink(missing_ok=True)
        size = int(image.metadata.get("resources", {}).get("disk", 0)) or 256 * 1024**2
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.unlink(missing_ok=True)
        progress(0.0, "building the template's base image (once)")
        build_root_disk(image.rootfs, partial, size)
        os.replace(partial, path)
        return path

    def drop_bases(self, template: str) -> None:
        """A template was deleted or replaced: its base images are stale."""
        for record in self.store.list_pools():
            for base in (record.config.path / "bases").glob(f"{template}-*.img"):
                base.unlink(missing_ok=True)

    # Instance disks -----------------------------------------------------------------------
    def attach(self, spec: InstanceSpec) -> InstanceSpec:
        return self._attach(spec, self.store.disks_with_pools(spec.id))

    def attach_all(self, specs: list[InstanceSpec]) -> list[InstanceSpec]:
        everyone = self.store.all_disks_with_pools()
        memo = self._attached  # the same spec with the same disks: the spec attached then
        if len(memo) > 2 * len(specs) + 256:
            memo.clear()
        found = []
        for spec in specs:
            disks = everyone.get(spec.id, [])
            seen = memo.get(spec.id)
            if seen is not None and seen[0] is spec and seen[1] == disks:
                found.append(seen[2])
                continue
            attached = self._attach(spec, disks)
            memo[spec.id] = (spec, disks, attached)
            found.append(attached)
        return found

    @staticmethod
    def _attach(spec: InstanceSpec, disks: list[tuple[DiskRecord, PoolConfig]]) -> InstanceSpec:
        if not disks:
            return spec
        root = next((open_pool(p).volume(spec.id, d.name) for d, p in disks if d.root), None)
        data = tuple(
            DataDisk(d.name, open_pool(p).volume(spec.id, d.name), d.size, d.idx, d.mount or "")
            for d, p in disks if not d.root
        )
        return dataclasses.replace(spec, root_disk=root, data_disks=data)

    def prepare(self, spec: InstanceSpec, image: TemplateImage, progress: Progress,
                pool_name: str | None = None) -> None:
        """The root disk of a new instance, cloned from the template's base image."""
        pool = self.pool(pool_name) if pool_name else self.default_pool()
        dest = pool.volume(spec.id, ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.store.insert_disk(DiskRecord(spec.id, ROOT, 0, pool.name, spec.resources.disk))
        try:
            base = self.base_image(pool, image, lambda f, p: progress(f * 0.5, p))
            if spec.resources.disk < base.stat().st_size:
                progress(0.5, "building the root disk (smaller than the template's base)")
                build_root_disk(image.rootfs, dest, spec.resources.disk)
            else:
                cow = clone_file(base, dest, lambda f, p: progress(0.5 + f * 0.4, p))
                progress(0.9, "cloned" if cow else "copied")
                if spec.resources.disk > base.stat().st_size:
                    _grow(pool, dest, spec.resources.disk)
                    _resize2fs(dest)
        except BaseException:
            dest.unlink(missing_ok=True)
            _rmdir(dest.parent)
            self.store.delete_disks(spec.id)
            raise

    @contextlib.contextmanager
    def _new_root(self, spec: InstanceSpec, pool_name: str | None) -> Iterator[Path]:
        """A root disk row and its path; both gone again if the body fails."""
        pool = self.pool(pool_name) if pool_name else self.default_pool()
        dest = pool.volume(spec.id, ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.store.insert_disk(DiskRecord(spec.id, ROOT, 0, pool.name, spec.resources.disk))
        try:
            yield dest
        except BaseException:
            dest.unlink(missing_ok=True)
            _rmdir(dest.parent)
            self.store.delete_disks(spec.id)
            raise

    def prepare_image(self, spec: InstanceSpec, source: Path, info: ImageInfo,
                      progress: Progress, pool_name: str | None = None) -> None:
        """A foreign VM image as the root disk: cloned (raw) or converted (qcow2, …)."""
        with self._new_root(spec, pool_name) as dest:
            cow = import_image(source, info, dest, spec.resources.disk, progress)
            progress(1.0, "cloned" if cow else "copied")

    def prepare_blank(self, spec: InstanceSpec, progress: Progress,
                      pool_name: str | None = None) -> None:
        """An empty (sparse) root disk for an installer to fill."""
        with self._new_root(spec, pool_name) as dest, dest.open("xb") as handle:
            handle.truncate(spec.resources.disk)
        progress(1.0, "blank disk")

    def release(self, spec: InstanceSpec) -> None:
        """Delete every disk of an instance (it is stopped and its driver state gone)."""
        for disk in self.store.disks(spec.id):
            try:
                pool = self.pool(disk.pool)
                pool.volume(spec.id, disk.name).unlink(missing_ok=True)
            except NotFound:
                pass
        # Snapshots (their data-disk copies live in each disk's pool, also of disks
        # removed since) in every pool.
        for record in self.store.list_pools():
            volumes = open_pool(record.config).volume_dir(spec.id)
            shutil.rmtree(volumes / "snapshots", ignore_errors=True)
            _rmdir(volumes)
        self.store.delete_disks(spec.id)

    def sweep_volumes(self, snapshots: dict[int, set[str]]) -> list[Path]:
        """At daemon start (no operation runs): remove the disk images of this host's
        instances that no disk row owns -- a ``disk add`` cut short between making the image
        and recording it -- and their snapshot directories no snapshot row owns (a snapshot
        cut short before its row). ``snapshots``: each instance with a row here -> its
        snapshot ids; only those instances are looked at (a pool may be shared: another
        host's volumes are not this one's to judge)."""
        instance_ids = set(snapshots)
        disks_of = self.store.all_disks_with_pools()
        owned = {(iid, disk.name) for iid, disks in disks_of.items() for disk, _pool in disks}
        removed: list[Path] = []
        for iid in instance_ids:
            for disk, config in disks_of.get(iid, []):
                image = open_pool(config).volume(iid, disk.name)
                # a data disk row whose image was never made (a ``disk add`` cut short
                # between its row and its mkfs); judged only where the instance's volume
                # folder is there (an unmounted pool is not a missing image)
                if not disk.root and image.parent.is_dir() and not image.exists():
                    log.warning("removing disk '%s' of instance %d: its image %s was never "
                                "made", disk.name, iid, image)
                    self.store.delete_disk(iid, disk.name)
                    removed.append(image)
        for record in self.store.list_pools():
            pool = open_pool(record.config)
            for iid in instance_ids:
                folder = pool.volume_dir(iid)
                if not folder.is_dir():
                    continue
                for partial in folder.glob(f".*.img{PARTIAL}"):
                    log.warning("removing %s: a data disk image cut short", partial)
                    partial.unlink(missing_ok=True)
                    removed.append(partial)
                for image in folder.glob("*.img"):
                    if (iid, image.stem) not in owned and image.is_file():
                        log.warning("removing disk image %s: no disk of instance %d owns it",
                                    image, iid)
                        image.unlink(missing_ok=True)
                        removed.append(image)
                taken = folder / "snapshots"
                for made in taken.iterdir() if taken.is_dir() else ():
                    if made.name not in snapshots[iid]:
                        log.warning("removing snapshot directory %s: no snapshot of instance "
                                    "%d owns it", made, iid)
                        shutil.rmtree(made, ignore_errors=True)
                        removed.append(made)
        return removed

    def receive_root(self, instance_id: int, size: int) -> None:
        pool = self.default_pool()
        pool.volume(instance_id, ROOT).parent.mkdir(parents=True, exist_ok=True)
        self.store.insert_disk(DiskRecord(instance_id, ROOT, 0, pool.name, size))

    def receive_data_disk(self, instance_id: int, name: str, index: int, size: int,
                          pending_size: int | None, mount: str | None) -> Path:
        pool = self.default_pool()
        path = pool.volume(instance_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.store.insert_disk(DiskRecord(instance_id, name, index, pool.name, size,
                                          pending_size, mount))
        return path

    def pending_sizes(self, instance_id: int) -> dict[str, int | None]:
        return {d.name: d.pending_size for d in self.store.disks(instance_id)}

    def disks(self, instance_id: int) -> list[tuple[DiskRecord, Path]]:
        return [(d, self.pool(d.pool).volume(instance_id, d.name))
                for d in self.store.disks(instance_id)]

    def clone_disks(self, source_id: int, target_id: int, pool_name: str | None,
                    progress: Progress = _quiet) -> bool:
        """Copy every disk of ``source_id`` to ``target_id``; True if all were CoW clones."""
        disks = self.store.disks(source_id)
        if not disks:
            raise Unsupported(f"instance {source_id} has no disks in a storage pool")
        all_cow = True
        made: list[Path] = []
        try:
            for n, disk in enumerate(disks):
                src = self.pool(disk.pool).volume(source_id, disk.name)
                pool = self.pool(pool_name) if pool_name else self.pool(disk.pool)
                dst = pool.volume(target_id, disk.name)
                dst.parent.mkdir(parents=True, exist_ok=True)
                self.store.insert_disk(dataclasses.replace(disk, instance_id=target_id,
                                                           pool=pool.name))
                made.append(dst)
                all_cow &= clone_file(src, dst, _part(progress, n, len(disks), disk.name))
        except BaseException:
            for path in made:
                path.unlink(missing_ok=True)
                _rmdir(path.parent)
            self.store.delete_disks(target_id)
            raise
        return all_cow


def _part(progress: Progress, index: int, count: int, label: str) -> Progress:
    def report(fraction: float, phase: str) -> None:
        progress((index + fraction) / count, f"{label}: {phase}")

    return report


def _grow(pool: Pool, image: Path, size: int) -> None:
    try:
        with image.open("r+b") as handle:
            handle.truncate(size)
    except OSError as exc:
        if exc.errno == errno.EFBIG:
            raise InvalidInput(
                f"disk size {format_size(size)} is more than pool '{pool.name}' can hold in "
                "one file"
            ) from None
        raise


def _resize2fs(image: Path) -> None:
    started = time.monotonic()
    try:
        run(["resize2fs", "-f", str(image)], timeout=600)
    except Exception:
        grow_ext4_offline(image)  # e2fsck first, then resize2fs
    log.debug("resize2fs %s: %.2f s", image, time.monotonic() - started)


def _rmdir(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
