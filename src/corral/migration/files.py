"""The instance's files around its root disk, as a migration moves them: what is sent as a
tar, what is sent file by file beside the disk, where an arriving side file may go, and
whether the target has room for it all. Pure file work: no service, no driver."""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from corral.domain.errors import CorralError, HostFailure, InvalidInput
from corral.domain.instance import InstanceSpec
from corral.host.untar import extract_all
from corral.wire.migration import IncomingRequest

# What stays behind when the instance directory's files move (the disk goes separately,
# nics.json is rewritten by the target's network service, run/ dies with the process).
# snapshots/ is beside the root disk (the instance directory only without pools) and moves
# file by file as disk frames.
_NOT_FILES = {"root.img", "nics.json", "run", "lxc.log", "snapshots"}
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SPACE_MARGIN = 16 * 1024**2


class NoSpace(CorralError):
    code = "no_space"
    status = 507


def instance_files(directory: Path) -> bytes:
    """A tar of the instance's own files (snapshots, configuration, console log)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        if directory.is_dir():
            for entry in sorted(directory.iterdir()):
                if entry.name in _NOT_FILES or entry.is_socket():
                    continue
                tar.add(entry, arcname=entry.name)
    return buffer.getvalue()


def extract_files(directory: Path, body: bytes) -> None:
    """Unpack a tar made by ``instance_files`` into ``directory`` (only plain data)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r") as tar:
            extract_all(tar, directory, "data")
    except tarfile.TarError as exc:  # a broken or unsafe archive (the "data" filter's no)
        raise InvalidInput(f"the instance's files are not a safe archive: {exc}") from None
    except OSError as exc:
        raise HostFailure(f"writing the instance's files failed: {exc}") from exc


def files_size(directory: Path) -> int:
    total = 0
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.name in _NOT_FILES:
                continue
            if entry.is_file():
                total += entry.stat().st_blocks * 512
            elif entry.is_dir():
                total += sum(p.stat().st_blocks * 512 for p in entry.rglob("*") if p.is_file())
    return total


def snapshot_files(spec: InstanceSpec, ids: list[str]) -> list[tuple[str, Path]]:
    """(name relative to the root disk's directory, path) of every file of the snapshots
    ``ids`` (``snapshots/<id>/…`` beside the root disk)."""
    base = spec.disk_path.parent
    found: list[tuple[str, Path]] = []
    for snapshot_id in ids:
        top = base / "snapshots" / snapshot_id
        if top.is_dir():
            found.extend((p.relative_to(base).as_posix(), p)
                         for p in sorted(top.rglob("*")) if p.is_file())
    return found


def check_space(where: Path, request: IncomingRequest) -> None:
    """Refuse (``NoSpace``) an arriving instance whose disk and files do not fit ``where``."""
    need = request.disk_allocated + request.files_size + SPACE_MARGIN
    free = shutil.disk_usage(where).free
    if need > free:
        raise NoSpace(
            f"not enough disk space on the target: {free // 1024**2} MiB free in "
            f"{where}, the instance needs {need // 1024**2} MiB"
        )


def side_file(spec: InstanceSpec, request: IncomingRequest, name: str, size: int) -> Path:
    """The target path of ``name`` (a snapshot's file or a data disk, relative to the
    root disk's directory), created with length ``size``; anything else is refused."""
    parts = PurePosixPath(name).parts
    if not parts or not all(_PART.match(part) for part in parts):
        raise InvalidInput(f"bad file name '{name}'")
    mirrored = request.live_disks if request.path == "live" else []  # those go over NBD
    data = {f"{d.name}.img": d for d in spec.data_disks
            if mirrored is not None and d.name not in mirrored}
    if len(parts) == 1 and parts[0] in data:
        return data[parts[0]].path
    if (len(parts) < 3 or parts[0] != "snapshots"
            or parts[1] not in {s.id for s in request.snapshots}):
        raise InvalidInput(f"'{name}' is no file of this migration")
    path = spec.disk_path.parent.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
    finally:
        os.close(fd)
    return path
