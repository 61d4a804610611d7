"""Backing up a disk image into a chunk store, and restoring one from it.

Fixed-size chunks (4 MiB by default, as Proxmox Backup Server does for VM images: a block
device's content does not shift, so content-defined boundaries buy nothing). Holes and
all-zero chunks are not stored. Chunks are hashed, compressed and sealed by a small thread
pool (hashlib and zstd release the GIL) while the main thread reads ahead.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from corral.backup.crypto import CorruptChunk
from corral.backup.manifest import (
    ChunkRef,
    DataDiskBackup,
    InstanceInfo,
    Manifest,
    Stats,
    new_backup_id,
)
from corral.backup.store import ChunkStore
from corral.domain.disks import CHUNK_SIZE
from corral.domain.errors import HostFailure, InvalidInput, NotFound

BytesProgress = Callable[[int, int], None]
"""(bytes done, bytes total); may raise to cancel."""


def _quiet(done: int, total: int) -> None:
    del done, total


def data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """The (start, end) ranges of ``fd`` that hold data (SEEK_DATA/SEEK_HOLE)."""
    extents: list[tuple[int, int]] = []
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        extents.append((start, end))
        offset = end
    return extents


def chunks_with_data(extents: list[tuple[int, int]], chunk_size: int) -> Iterator[int]:
    """Indexes of the chunks that overlap a data extent, ascending, each once."""
    last = -1
    for start, end in extents:
        for index in range(max(start // chunk_size, last + 1), (end - 1) // chunk_size + 1):
            yield index
            last = index


@dataclass(frozen=True)
class DataImage:
    """A data disk's point-in-time image and what recreates the disk."""

    name: str
    path: Path
    index: int
    mount: str | None = None


@dataclass
class _Plan:
    name: str
    path: Path
    size: int
    wanted: list[int]
    refs: dict[int, ChunkRef]
    incremental: bool


def _plan(name: str, image: Path, previous: Manifest | None, changed: AbstractSet[int] | None,
          chunk_size: int, stats: Stats) -> _Plan:
    """Which chunks of ``image`` to read; the ones taken unread from ``previous``."""
    with image.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        before = previous.disk(name) if previous is not None else None
        incremental = (changed is not None and previous is not None and before is not None
                       and before.size == size and previous.chunk_size == chunk_size)
        if changed is not None and not incremental:
            raise InvalidInput(f"a changed-chunk set for disk '{name}' needs a previous backup "
                               "of that disk with the same size and chunk size")
        if incremental:
            assert before is not None and changed is not None
            refs = {c.index: c for c in before.chunks if c.index not in changed}
            stats.reused_bytes += sum(c.length for c in refs.values())
            return _Plan(name, image, size, sorted(changed), refs, True)
        wanted = list(chunks_with_data(data_extents(f.fileno(), size), chunk_size))
        return _Plan(name, image, size, wanted, {}, False)


def backup_image(
    image: Path, store: ChunkStore, instance: InstanceInfo, *,
    chunk_size: int = CHUNK_SIZE, previous: Manifest | None = None,
    changed: AbstractSet[int] | None = None, consistency: str = "", workers: int | None = None,
    progress: BytesProgress = _quiet, when: datetime | None = None,
    tracking: str | None = None,
) -> Manifest:
    """Store ``image`` (a root disk alone) and commit its manifest (last). ``changed``, when
    given together with a ``previous`` manifest of the same geometry, names the only chunk
    indexes that may differ from ``previous`` (a dirty bitmap): the others are taken from
    it unread."""
    return backup_disks(
        image, [], store, instance, chunk_size=chunk_size, previous=previous,
        changed={"root": changed} if changed is not None else None, consistency=consistency,
        workers=workers, progress=progress, when=when, tracking=tracking)


def backup_disks(
    root: Path, data: Sequence[DataImage], store: ChunkStore, instance: InstanceInfo, *,
    chunk_size: int = CHUNK_SIZE, previous: Manifest | None = None,
    changed: Mapping[str, AbstractSet[int]] | None = None, consistency: str = "",
    workers: int | None = None, progress: BytesProgress = _quiet,
    when: datetime | None = None, tracking: str | None = None,
) -> Manifest:
    """Store the root disk image and every data disk image, then commit one manifest
    (last). Chunks are deduplicated across all disks (and backups). ``changed`` maps a disk
    name to the only chunk indexes that may differ from that disk in ``previous`` (its dirty
    bitmap); a disk without an entry is read whole."""
    started = time.monotonic()
    when = when or datetime.now(UTC)
    store.open()
    store.known_chunks()
    stats = Stats()
    changed = changed or {}
    plans = [_plan("root", root, previous, changed.get("root"), chunk_size, stats)]
    plans += [_plan(d.name, d.path, previous, changed.get(d.name), chunk_size, stats)
              for d in data]
    total = sum(len(p.wanted) for p in plans) * chunk_size
    zero = bytes(chunk_size)
    threads = workers or max(2, os.cpu_count() or 2)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="backup")
    pending: list[tuple[_Plan, int, Future[tuple[str, int]]]] = []

    def store_one(data: bytes) -> tuple[str, int]:
        name = store.codec.name(data)
        return name, store.put_chunk(name, data)

    def settle(plan: _Plan, index: int, future: Future[tuple[str, int]]) -> None:
        name, written = future.result()
        length = _length(index, chunk_size, plan.size)
        plan.refs[index] = ChunkRef(index, name, length)
        if written:
            stats.new_chunks += 1
            stats.new_bytes += length
            stats.stored_bytes += written
        else:
            stats.reused_bytes += length

    number = 0
    try:
        for plan in plans:
            with plan.path.open("rb") as f:
                for index in plan.wanted:
                    plan.refs.pop(index, None)
                    chunk = os.pread(f.fileno(), chunk_size, index * chunk_size)
                    stats.read_bytes += len(chunk)
                    if chunk == zero[: len(chunk)]:
                        stats.zero_bytes += len(chunk)
                    else:
                        pending.append((plan, index, pool.submit(store_one, chunk)))
                        while len(pending) > 2 * threads:
                            settle(*pending.pop(0))
                    number += 1
                    progress(min(number * chunk_size, total), total)
        for item in pending:
            settle(*item)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    stats.seconds = round(time.monotonic() - started, 3)

    def refs(plan: _Plan) -> list[ChunkRef]:
        return sorted(plan.refs.values(), key=lambda c: c.index)

    def method(plan: _Plan) -> str:
        return "dirty-bitmap" if plan.incremental else "hash"

    head, rest = plans[0], plans[1:]
    manifest = Manifest(
        id=new_backup_id(instance.name, when), instance=instance, created_at=when,
        disk_size=head.size, chunk_size=chunk_size, chunks=refs(head),
        parent=previous.id if previous is not None else None,
        encrypted=store.codec.encrypted, key_fingerprint=store.codec.fingerprint(),
        consistency=consistency, method=method(head), stats=stats, tracking=tracking,
        disks=[DataDiskBackup(p.name, p.size, d.index, refs(p), d.mount, method(p))
               for p, d in zip(rest, data, strict=True)],
    )
    store.commit(manifest)
    return manifest


def _length(index: int, chunk_size: int, size: int) -> int:
    return min(chunk_size, size - index * chunk_size)


def restore_image(
    manifest: Manifest, store: ChunkStore, dest: Path, progress: BytesProgress = _quiet,
    disk: str = "root",
) -> None:
    """Write the backed-up disk ``disk`` (the root disk by default) to ``dest`` (a new
    sparse file; removed again on failure). Every chunk is verified against its name
    before it is written."""
    found = manifest.disk(disk)
    if found is None:
        raise NotFound(f"backup '{manifest.id}' has no disk '{disk}'")
    store.open(create=False)
    total = sum(c.length for c in found.chunks)
    done = 0
    try:
        out = dest.open("xb")
    except FileExistsError:
        raise InvalidInput(f"'{dest}' already exists") from None
    try:
        with out:
            out.truncate(found.size)
            for ref in found.chunks:
                try:
                    data = store.get_chunk(ref.name)
                except CorruptChunk as exc:
                    raise HostFailure(
                        f"backup '{manifest.id}' is damaged: disk {disk}, chunk "
                        f"{ref.name[:16]}… at offset {ref.index * manifest.chunk_size}: {exc}"
                    ) from None
                if len(data) != ref.length:
                    raise HostFailure(f"backup '{manifest.id}': disk {disk}, chunk {ref.index} "
                                      "has a bad size")
                os.pwrite(out.fileno(), data, ref.index * manifest.chunk_size)
                done += ref.length
                progress(done, total)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
