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
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from corral.backup.crypto import CorruptChunk
from corral.backup.manifest import ChunkRef, InstanceInfo, Manifest, Stats, new_backup_id
from corral.backup.store import ChunkStore
from corral.domain.errors import HostFailure, InvalidInput

CHUNK_SIZE = 4 << 20
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


def backup_image(
    image: Path, store: ChunkStore, instance: InstanceInfo, *,
    chunk_size: int = CHUNK_SIZE, previous: Manifest | None = None,
    changed: AbstractSet[int] | None = None, consistency: str = "", workers: int | None = None,
    progress: BytesProgress = _quiet, when: datetime | None = None,
    tracking: str | None = None,
) -> Manifest:
    """Store ``image`` and commit its manifest (last). ``changed``, when given together with
    a ``previous`` manifest of the same geometry, names the only chunk indexes that may
    differ from ``previous`` (a dirty bitmap): the others are taken from it unread."""
    started = time.monotonic()
    when = when or datetime.now(UTC)
    store.open()
    store.known_chunks()
    stats = Stats()
    with image.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        incremental = (
            changed is not None and previous is not None
            and previous.disk_size == size and previous.chunk_size == chunk_size
        )
        if changed is not None and not incremental:
            raise InvalidInput("a changed-chunk set needs a previous backup of the same disk "
                               "size and chunk size")
        refs: dict[int, ChunkRef] = {}
        if incremental:
            assert previous is not None and changed is not None
            refs = {c.index: c for c in previous.chunks if c.index not in changed}
            wanted = sorted(changed)
            stats.reused_bytes = sum(c.length for c in refs.values())
        else:
            wanted = list(chunks_with_data(data_extents(f.fileno(), size), chunk_size))
        total = len(wanted) * chunk_size
        zero = bytes(chunk_size)
        threads = workers or max(2, os.cpu_count() or 2)
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="backup")
        pending: list[tuple[int, Future[tuple[str, int]]]] = []

        def store_one(data: bytes) -> tuple[str, int]:
            name = store.codec.name(data)
            return name, store.put_chunk(name, data)

        def settle(index: int, future: Future[tuple[str, int]], length: int) -> None:
            name, written = future.result()
            refs[index] = ChunkRef(index, name, length)
            if written:
                stats.new_chunks += 1
                stats.new_bytes += length
                stats.stored_bytes += written
            else:
                stats.reused_bytes += length

        try:
            for number, index in enumerate(wanted):
                refs.pop(index, None)
                data = os.pread(f.fileno(), chunk_size, index * chunk_size)
                stats.read_bytes += len(data)
                if data == zero[: len(data)]:
                    stats.zero_bytes += len(data)
                else:
                    pending.append((index, pool.submit(store_one, data)))
                    while len(pending) > 2 * threads:
                        i, fut = pending.pop(0)
                        settle(i, fut, _length(i, chunk_size, size))
                progress(min((number + 1) * chunk_size, total), total)
            for i, fut in pending:
                settle(i, fut, _length(i, chunk_size, size))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    stats.seconds = round(time.monotonic() - started, 3)
    manifest = Manifest(
        id=new_backup_id(instance.name, when), instance=instance, created_at=when,
        disk_size=size, chunk_size=chunk_size,
        chunks=sorted(refs.values(), key=lambda c: c.index),
        parent=previous.id if previous is not None else None,
        encrypted=store.codec.encrypted, key_fingerprint=store.codec.fingerprint(),
        consistency=consistency, method="dirty-bitmap" if incremental else "hash",
        stats=stats, tracking=tracking,
    )
    store.commit(manifest)
    return manifest


def _length(index: int, chunk_size: int, size: int) -> int:
    return min(chunk_size, size - index * chunk_size)


def restore_image(
    manifest: Manifest, store: ChunkStore, dest: Path, progress: BytesProgress = _quiet,
) -> None:
    """Write the backed-up disk to ``dest`` (a new sparse file; removed again on failure).
    Every chunk is verified against its name before it is written."""
    store.open(create=False)
    total = sum(c.length for c in manifest.chunks)
    done = 0
    try:
        out = dest.open("xb")
    except FileExistsError:
        raise InvalidInput(f"'{dest}' already exists") from None
    try:
        with out:
            out.truncate(manifest.disk_size)
            for ref in manifest.chunks:
                try:
                    data = store.get_chunk(ref.name)
                except CorruptChunk as exc:
                    raise HostFailure(
                        f"backup '{manifest.id}' is damaged: chunk {ref.name[:16]}… at offset "
                        f"{ref.index * manifest.chunk_size}: {exc}"
                    ) from None
                if len(data) != ref.length:
                    raise HostFailure(f"backup '{manifest.id}': chunk {ref.index} has a bad size")
                os.pwrite(out.fileno(), data, ref.index * manifest.chunk_size)
                done += ref.length
                progress(done, total)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
