"""The one-file template artifact, ``NAME.corral-template``: how templates travel.

Layout: an uncompressed POSIX tar whose **first** member is ``metadata.json`` (name, version,
os, arch, kernel source, default resources, and ``files``: the sha256 of every payload file
as installed), followed by the payload files. ``rootfs.tar.gz`` is already compressed and is
stored as is; the kernel and initramfs are stored gzip-compressed (``vmlinux.gz``,
``initrd.img.gz``) and decompressed on import. Checksums are of the installed (uncompressed)
bytes, so ``metadata.json`` is identical in the store and in the artifact.

Import is verify-then-publish: everything is unpacked into a staging directory, every file
is hashed while it is written, the rootfs archive is walked to the end, and only a fully
verified directory is handed back. A truncated file, a bad checksum, a broken archive, a
missing or malformed ``metadata.json``, an unknown or duplicated member all raise
``InvalidInput`` with a message saying which.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import re
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from corral.domain.archive import SizeBudget, check_member
from corral.domain.errors import InvalidInput
from corral.domain.names import validate_name
from corral.templates.image import INITRD, KERNEL, METADATA, ROOTFS

SUFFIX = ".corral-template"
FORMAT = 1
PROVISION = "provision.sh"
"""An appliance's provisioning script (optional payload)."""
PAYLOAD = (ROOTFS, KERNEL, INITRD, PROVISION)
COMPRESSED = {KERNEL, INITRD}
"""Payload files stored gzip-compressed inside the artifact (member name + '.gz')."""
MAX_METADATA = 1024 * 1024
REQUIRED = ("name", "version", "os", "arch", "files")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
CORRUPT: tuple[type[BaseException], ...] = (
    tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError,
    OSError,  # gzip/bz2 raise OSError without an errno for bad data
)
"""What reading a damaged archive raises (gzip/zlib/lzma/bz2/tar, a short read)."""

Progress = Callable[[float, str], None]


def _quiet(fraction: float, phase: str) -> None:
    del fraction, phase


def sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            sha.update(block)
    return sha.hexdigest()


def validate_metadata(data: Any, origin: str) -> dict[str, Any]:
    """The metadata as a dict if it names a template Corral can install, else InvalidInput."""
    if not isinstance(data, dict):
        raise InvalidInput(f"{origin}: metadata.json is not a JSON object")
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise InvalidInput(f"{origin}: metadata.json lacks {', '.join(missing)}")
    for key in ("name", "version", "os", "arch"):
        if not isinstance(data[key], str) or not data[key]:
            raise InvalidInput(f"{origin}: metadata.json field '{key}' must be a non-empty string")
    validate_name(data["name"], "template")
    files = data["files"]
    if not isinstance(files, dict) or ROOTFS not in files:
        raise InvalidInput(f"{origin}: metadata.json 'files' must list at least {ROOTFS}")
    for name, digest in files.items():
        if name not in PAYLOAD:
            raise InvalidInput(f"{origin}: metadata.json lists an unknown file '{name}'")
        if not isinstance(digest, str) or not _SHA.match(digest):
            raise InvalidInput(f"{origin}: metadata.json has no valid sha256 for '{name}'")
    if "resources" in data and not isinstance(data["resources"], dict):
        raise InvalidInput(f"{origin}: metadata.json 'resources' must be an object")
    return data


def artifact_digest(metadata: dict[str, Any]) -> str:
    """One checksum naming the template's content: sha256 over its sorted file checksums."""
    files = metadata.get("files", {})
    text = "".join(f"{name} {files[name]}\n" for name in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()


# -- export ----------------------------------------------------------------------------------


def export_template(directory: Path, dest: Path, progress: Progress = _quiet) -> None:
    """Write the installed template in ``directory`` to ``dest`` (atomically: a temporary file
    renamed into place). The installed files are verified first: a damaged store entry is
    refused instead of being shipped with checksums that do not match."""
    metadata = validate_metadata(json.loads((directory / METADATA).read_text()), str(directory))
    files: dict[str, str] = metadata["files"]
    total = sum((directory / name).stat().st_size for name in files) or 1
    done = 0
    progress(0.0, "verifying")
    for name, digest in files.items():
        if sha256_file(directory / name) != digest:
            raise InvalidInput(
                f"installed template '{metadata['name']}' is damaged: {name} does not match "
                "its checksum; rebuild or re-import it"
            )
    tmp = dest.with_name(f".{dest.name}.partial")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            meta_bytes = (directory / METADATA).read_bytes()
            _add_bytes(tar, METADATA, meta_bytes)
            for name in sorted(files, key=PAYLOAD.index):
                source = directory / name
                if name in COMPRESSED:
                    packed = dest.with_name(f".{dest.name}.{name}.gz")
                    try:
                        with source.open("rb") as src, gzip.open(packed, "wb", 6) as out:
                            for block in iter(lambda: src.read(_CHUNK), b""):
                                out.write(block)
                        _add_file(tar, name + ".gz", packed)
                    finally:
                        packed.unlink(missing_ok=True)
                else:
                    _add_file(tar, name, source)
                done += source.stat().st_size
                progress(done / total, f"packed {name}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> None:
    info = tarfile.TarInfo(name)
    info.size = path.stat().st_size
    info.mode = 0o644
    with path.open("rb") as handle:
        tar.addfile(info, handle)


# -- import ----------------------------------------------------------------------------------


def read_metadata(artifact: Path) -> dict[str, Any]:
    """The metadata of an artifact without unpacking the rest (for `template info FILE`)."""
    origin = artifact.name
    try:
        with tarfile.open(artifact, "r:") as tar:
            first = tar.next()
            if first is None or first.name != METADATA or not first.isfile():
                raise InvalidInput(f"{origin}: missing metadata (the first member must be "
                                   f"{METADATA})")
            return _load_metadata(tar, first, origin)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidInput(f"{origin} is not a Corral template archive: {exc}") from None


def _load_metadata(tar: tarfile.TarFile, member: tarfile.TarInfo, origin: str) -> dict[str, Any]:
    if member.size > MAX_METADATA:
        raise InvalidInput(f"{origin}: metadata.json is implausibly large ({member.size} bytes)")
    handle = tar.extractfile(member)
    if handle is None:
        raise InvalidInput(f"{origin}: metadata.json is not a regular file")
    raw = handle.read()
    if len(raw) != member.size:
        raise InvalidInput(f"{origin} is truncated (inside metadata.json)")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"{origin}: metadata.json is not valid JSON ({exc})") from None
    return validate_metadata(data, origin)


def unpack_artifact(
    artifact: Path, staging: Path, progress: Progress = _quiet, origin: str | None = None
) -> dict[str, Any]:
    """Unpack and verify ``artifact`` into the empty directory ``staging``; the metadata.
    ``origin`` names the file in error messages (default: its file name).

    On any error ``staging`` may hold partial files: the caller removes it (it is never
    published)."""
    origin = origin or artifact.name
    if not artifact.is_file():
        raise InvalidInput(f"template file '{artifact}' does not exist")
    total = artifact.stat().st_size or 1
    try:
        with artifact.open("rb") as raw, tarfile.open(fileobj=raw, mode="r:") as tar:
            first = tar.next()
            if first is None or first.name != METADATA or not first.isfile():
                raise InvalidInput(
                    f"{origin}: missing metadata (the first member must be {METADATA})"
                )
            metadata = _load_metadata(tar, first, origin)
            (staging / METADATA).write_bytes(json.dumps(metadata, indent=2, sort_keys=True)
                                             .encode() + b"\n")
            expected: dict[str, str] = metadata["files"]
            seen: set[str] = set()
            while (member := tar.next()) is not None:
                name = _payload_name(member, origin)
                if name not in expected:
                    raise InvalidInput(f"{origin}: '{member.name}' is not listed in metadata")
                if name in seen:
                    raise InvalidInput(f"{origin}: '{member.name}' appears twice")
                seen.add(name)
                digest = _write_member(tar, member, staging / name, origin,
                                       compressed=member.name != name)
                if digest != expected[name]:
                    raise InvalidInput(
                        f"{origin}: checksum mismatch for {name} (expected "
                        f"{expected[name][:12]}…, got {digest[:12]}…); the file is corrupt"
                    )
                progress(min(raw.tell() / total, 0.95), f"verified {name}")
            missing = sorted(set(expected) - seen)
            if missing:
                raise InvalidInput(f"{origin} is incomplete: {', '.join(missing)} missing "
                                   "(truncated?)")
    except CORRUPT as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # a filesystem error (disk full, …), not the archive's fault
        raise InvalidInput(f"corrupt template: {origin} is not a valid Corral template archive "
                           f"(truncated or corrupt: {type(exc).__name__}: {exc})") from None
    progress(0.97, "checking the root filesystem archive")
    check_rootfs_archive(staging / ROOTFS, origin, _declared_disk(metadata))
    return metadata


def _payload_name(member: tarfile.TarInfo, origin: str) -> str:
    if not member.isfile():
        raise InvalidInput(f"{origin}: member '{member.name}' is not a regular file")
    name = member.name
    if name.endswith(".gz") and name[:-3] in COMPRESSED:
        return name[:-3]
    if name in PAYLOAD and name not in COMPRESSED:
        return name
    raise InvalidInput(f"{origin}: unexpected member '{name}'")


def _write_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, origin: str, compressed: bool
) -> str:
    handle = tar.extractfile(member)
    if handle is None:
        raise InvalidInput(f"{origin}: cannot read '{member.name}'")
    sha = hashlib.sha256()
    source: IO[bytes] | gzip.GzipFile = (
        gzip.GzipFile(fileobj=handle, mode="rb") if compressed else handle
    )
    written = 0
    with dest.open("xb") as out:
        for block in iter(lambda: source.read(_CHUNK), b""):
            sha.update(block)
            out.write(block)
            written += len(block)
    if not compressed and written != member.size:
        raise InvalidInput(f"{origin} is truncated (inside {member.name})")
    return sha.hexdigest()


MAX_ROOTFS = 64 * 1024**3
"""The most content a template without a declared disk size may unpack to."""


def _declared_disk(metadata: dict[str, Any]) -> int:
    disk = metadata.get("resources", {}).get("disk")
    return disk if isinstance(disk, int) and not isinstance(disk, bool) and disk > 0 \
        else MAX_ROOTFS


def check_rootfs_archive(path: Path, origin: str, limit: int = MAX_ROOTFS) -> None:
    """Walk the root filesystem archive to its end: a broken or unsafe one is refused now,
    not at the first create (``domain.archive``: names, links, devices; its content must fit
    ``limit``, the template's declared disk)."""
    budget = SizeBudget(limit, "the template's declared disk size")
    try:
        with tarfile.open(path, "r:*") as rootfs:
            for member in rootfs:
                try:
                    check_member(member)
                    budget.add(member)
                except InvalidInput as exc:
                    raise InvalidInput(f"{origin}: {exc.message}") from None
    except CORRUPT as exc:
        raise InvalidInput(f"corrupt template: {origin}: the root filesystem archive is broken "
                           f"({type(exc).__name__}: {exc})") from None
