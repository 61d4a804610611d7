"""Foreign VM disk images (``corral create --image FILE``): inspected and converted to a raw
file in the pool by ``qemu-img``, so every volume in a pool is raw (CoW clones, snapshots,
``block_resize`` and migration treat it like any other disk).

An image whose header names another host file is refused, since the conversion would read
that file into the guest's disk: a backing file (a crafted "raw" image can look like qcow2
with a backing file of ``/etc/shadow``), a qcow2 external data file, a VMDK extent in any
file but the image itself; so is anything but the formats below.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from corral.domain.errors import HostFailure, InvalidInput
from corral.host.run import require_tool, run
from corral.storage.pools.copy import clone_file

FORMATS = ("raw", "qcow2", "vmdk", "vdi", "vpc", "vhdx")
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class ImageInfo:
    format: str
    virtual_size: int


def parse_info(text: str, path: Path) -> ImageInfo:
    """``qemu-img info --output=json`` → what Corral needs; InvalidInput for what it refuses."""
    try:
        data = json.loads(text)
        fmt, size = str(data["format"]), int(data["virtual-size"])
    except (ValueError, KeyError, TypeError) as exc:
        raise HostFailure(f"qemu-img info of {path} gave no format/size: {exc}") from exc
    if "backing-filename" in data or "full-backing-filename" in data:
        raise InvalidInput(f"{path} is a {fmt} image with a backing file "
                           f"({data.get('backing-filename')}); give a standalone image "
                           "(qemu-img convert it first)")
    specific = data.get("format-specific", {})
    details = specific.get("data", {}) if isinstance(specific, dict) else {}
    details = details if isinstance(details, dict) else {}
    if "data-file" in details:
        raise InvalidInput(f"{path} is a {fmt} image with an external data file "
                           f"({details['data-file']}); give a standalone image "
                           "(qemu-img convert it first)")
    own = str(data.get("filename", path))
    for extent in details.get("extents", []) if isinstance(details.get("extents"), list) else []:
        name = extent.get("filename") if isinstance(extent, dict) else None
        if name is not None and name != own:
            raise InvalidInput(f"{path} is a {fmt} image with an extent in another file "
                               f"({name}); give a single-file image (qemu-img convert it "
                               "first)")
    if fmt not in FORMATS:
        raise InvalidInput(f"{path} is a '{fmt}' image; Corral imports: {', '.join(FORMATS)}")
    if size <= 0:
        raise InvalidInput(f"{path} is an empty image")
    return ImageInfo(fmt, size)


def inspect_image(path: Path) -> ImageInfo:
    if not path.is_absolute():
        raise InvalidInput(f"image path '{path}' must be absolute (a file on the daemon's host)")
    if not path.is_file():
        raise InvalidInput(f"image '{path}' is not a file on the daemon's host")
    qemu_img = require_tool("qemu-img", "qemu-utils")
    proc = run([qemu_img, "info", "--output=json", str(path)], check=False, timeout=60)
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        raise InvalidInput(f"qemu-img cannot read {path}: {said}")
    return parse_info(proc.stdout.decode(errors="replace"), path)


def import_image(src: Path, info: ImageInfo, dest: Path, size: int, progress: Progress) -> bool:
    """Write ``src`` as a raw ``size``-byte file at ``dest``; True if it was a CoW clone.
    Raw: a clone (reflink or sparse copy); others: ``qemu-img convert`` (sparse)."""
    if size < info.virtual_size:
        raise InvalidInput(f"disk size {size} is smaller than the image ({info.virtual_size} "
                           "bytes); disks do not shrink")
    try:
        if info.format == "raw":
            cow = clone_file(src, dest, progress)
        else:
            cow = False
            progress(0.0, f"converting {info.format} to raw")
            qemu_img = require_tool("qemu-img", "qemu-utils")
            proc = run([qemu_img, "convert", "-f", info.format, "-O", "raw", str(src),
                        str(dest)], check=False, timeout=3600)
            if proc.returncode != 0:
                said = (proc.stderr or proc.stdout).decode(errors="replace").strip()
                raise HostFailure(f"qemu-img convert of {src} failed: {said}")
        with dest.open("r+b") as handle:
            if handle.seek(0, 2) < size:
                handle.truncate(size)
        progress(1.0, "imported")
        return cow
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
