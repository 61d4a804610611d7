"""The bundled ``tiny`` template: a static busybox system that boots as a container or a VM.

Everything comes from Debian packages already on the host: ``busybox-static`` for the root
filesystem and the initramfs, ``linux-image-amd64`` for the kernel and its modules. Nothing
is downloaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from corral.domain.errors import Unsupported
from corral.host.run import output, require_tool
from corral.templates.artifact import sha256_file
from corral.templates.builders.cpio import Entry, write_newc
from corral.templates.builders.kernel import (
    ModuleIndex,
    host_kernel_version,
    write_vmlinux,
)
from corral.templates.image import INITRD, KERNEL, METADATA, ROOTFS, TemplateImage

NAME = "tiny"
VERSION = "1"
READY_MARKER = "corral-guest-ready"
AGENT_PORT = "org.corral.agent"
BUSYBOX = Path("/bin/busybox")

# What a VM needs from the kernel, by machine type; dependencies are added from modules.dep.
VM_MODULES: dict[str, tuple[str, ...]] = {
    "microvm": ("virtio_mmio",),
    "q35": ("virtio_pci",),
    "pc": ("virtio_pci",),
}
COMMON_MODULES = (
    "virtio_blk",
    "ext4",
    "virtio_console",
    "virtio_net",
    "virtio_balloon",
    "button",  # the ACPI power button: QMP system_powerdown
    "evdev",  # busybox acpid reads the button from /dev/input/event*
)

CMDLINE = f"console=ttyS0 root=/dev/vda rw quiet panic=-1 corral.agent={AGENT_PORT}"

_DIRS = (
    "bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "etc/init.d", "etc/acpi",
    "etc/acpi/PWRF", "proc", "sys", "dev", "run", "var", "var/log", "mnt", "home", "lib",
)  # fmt: skip

_ETC_FILES: dict[str, str] = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    "etc/group": "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
    "etc/shadow": "root::19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
    "etc/hostname": "tiny\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
    "etc/profile": 'export PATH=/sbin:/bin:/usr/sbin:/usr/bin\nPS1="\\h:\\w# "\n',
    "etc/shells": "/bin/sh\n",
}

ProgressFn = Callable[[float, str], None]


def guest_file(name: str) -> bytes:
    """A file shipped in ``corral/templates/guest``."""
    return (resources.files("corral.templates") / "guest" / name).read_bytes()


_GUEST_FILES = ("inittab", "rcS", "rcK", "corral-agent", "corral-net", "power-button", "init")
_BUILDER_SOURCES = ("tiny.py", "cpio.py", "kernel.py")


def content_version(
    kernel_version: str | None = None, machine: str = "microvm",
    read_guest: Callable[[str], bytes] | None = None,
) -> str:
    """What ``build_tiny`` would make now, as one checksum: the builder's version and source,
    every guest file it ships, the host's busybox and the kernel version. Stored in the
    metadata (``build.content``) so an installed template can be compared with it (cheap:
    nothing is built)."""
    sha = hashlib.sha256()

    def feed(label: str, data: bytes) -> None:
        sha.update(f"{label} {len(data)}\n".encode())
        sha.update(data)

    feed("version", VERSION.encode())
    feed("kernel", (kernel_version or host_kernel_version()).encode())
    feed("machine", machine.encode())
    for name in _GUEST_FILES:
        feed(f"guest/{name}", (read_guest or guest_file)(name))
    builders = resources.files("corral.templates.builders")
    for name in _BUILDER_SOURCES:
        source = builders / name
        feed(f"builder/{name}", source.read_bytes() if source.is_file() else b"")
    feed("busybox", hashlib.sha256(BUSYBOX.read_bytes()).digest()
         if BUSYBOX.is_file() else b"")
    return sha.hexdigest()


def busybox_applets() -> list[str]:
    """Paths (no leading slash) of every applet the host's busybox provides."""
    require_tool("busybox", "busybox-static")
    listing = output([str(BUSYBOX), "--list-full"])
    return sorted({line.strip() for line in listing.splitlines() if line.strip()})


def has_interpreter(elf: bytes) -> bool:
    """Whether a 64-bit ELF image asks for a dynamic loader (a PT_INTERP program header)."""
    phoff = int.from_bytes(elf[0x20:0x28], "little")
    phentsize = int.from_bytes(elf[0x36:0x38], "little")
    phnum = int.from_bytes(elf[0x38:0x3A], "little")
    for i in range(phnum):
        start = phoff + i * phentsize
        if int.from_bytes(elf[start : start + 4], "little") == 3:  # PT_INTERP
            return True
    return False


def _check_static(path: Path) -> None:
    head = path.read_bytes()[:65536]
    if not head.startswith(b"\x7fELF\x02") or has_interpreter(head):
        raise Unsupported(
            f"'{path}' is not a static 64-bit binary (Debian package: busybox-static)"
        )


def _tar_add(tar: tarfile.TarFile, name: str, kind: bytes, mode: int, data: bytes = b"") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 0
    if kind == tarfile.SYMTYPE:
        info.linkname = data.decode()
        tar.addfile(info)
    elif kind == tarfile.REGTYPE:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def write_rootfs(dest: Path, applets: list[str]) -> None:
    busybox = BUSYBOX.read_bytes()
    with tarfile.open(dest, "w:gz", compresslevel=6) as tar:
        _tar_add(tar, ".", tarfile.DIRTYPE, 0o755)
        for directory in _DIRS:
            _tar_add(tar, directory, tarfile.DIRTYPE, 0o755)
        _tar_add(tar, "root", tarfile.DIRTYPE, 0o700)
        _tar_add(tar, "tmp", tarfile.DIRTYPE, 0o1777)
        _tar_add(tar, "bin/busybox", tarfile.REGTYPE, 0o755, busybox)
        for applet in applets:
            if applet != "bin/busybox":
                _tar_add(tar, applet, tarfile.SYMTYPE, 0o777, b"/bin/busybox")
        for name, text in _ETC_FILES.items():
            mode = 0o640 if name == "etc/shadow" else 0o644
            _tar_add(tar, name, tarfile.REGTYPE, mode, text.encode())
        _tar_add(tar, "etc/inittab", tarfile.REGTYPE, 0o644, guest_file("inittab"))
        _tar_add(tar, "etc/init.d/rcS", tarfile.REGTYPE, 0o755, guest_file("rcS"))
        _tar_add(tar, "etc/init.d/rcK", tarfile.REGTYPE, 0o755, guest_file("rcK"))
        _tar_add(tar, "sbin/corral-agent", tarfile.REGTYPE, 0o755, guest_file("corral-agent"))
        _tar_add(tar, "sbin/corral-net", tarfile.REGTYPE, 0o755, guest_file("corral-net"))
        button = guest_file("power-button")
        _tar_add(tar, "etc/acpi/PWRF/00000080", tarfile.REGTYPE, 0o755, button)


def initrd_entries(moddir: Path, module_paths: list[str], applets: list[str]) -> Iterator[Entry]:
    dirs = {"bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "newroot", "etc"}
    dirs.add("lib/modules")
    for path in module_paths:
        parts = Path("lib/modules", path).parent.parts
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    for directory in sorted(dirs):
        yield Entry(directory, stat.S_IFDIR | 0o755)
    yield Entry("bin/busybox", stat.S_IFREG | 0o755, BUSYBOX.read_bytes())
    for applet in applets:
        if applet != "bin/busybox" and applet.split("/")[0] in ("bin", "sbin", "usr"):
            yield Entry(applet, stat.S_IFLNK | 0o777, b"/bin/busybox")
    for path in module_paths:
        yield Entry(f"lib/modules/{path}", stat.S_IFREG | 0o644, (moddir / path).read_bytes())
    listing = "".join(f"{path}\n" for path in module_paths).encode()
    yield Entry("etc/corral-modules", stat.S_IFREG | 0o644, listing)
    yield Entry("init", stat.S_IFREG | 0o755, guest_file("init"))



def build_tiny(
    out_dir: Path,
    progress: ProgressFn | None = None,
    *,
    machine: str = "microvm",
    kernel_version: str | None = None,
) -> TemplateImage:
    """Write the ``tiny`` template (metadata.json, rootfs.tar.gz, vmlinux, initrd.img) into
    ``out_dir`` and return it loaded."""

    def report(fraction: float, phase: str) -> None:
        if progress is not None:
            progress(fraction, phase)

    if machine not in VM_MODULES:
        raise Unsupported(f"machine '{machine}' is not one of: {', '.join(VM_MODULES)}")
    _check_static(BUSYBOX)
    version = kernel_version or host_kernel_version()
    moddir = Path("/lib/modules") / version
    vmlinuz = Path("/boot") / f"vmlinuz-{version}"
    out_dir.mkdir(parents=True, exist_ok=True)

    content = content_version(version, machine)
    report(0.0, "root filesystem")
    applets = busybox_applets()
    write_rootfs(out_dir / ROOTFS, applets)

    report(0.2, f"kernel {version}")
    write_vmlinux(vmlinuz, out_dir / KERNEL)

    report(0.6, "initramfs")
    modules = ModuleIndex.load(moddir).load_order([*VM_MODULES[machine], *COMMON_MODULES])
    part = out_dir / (INITRD + ".part")
    with open(part, "wb") as f:
        write_newc(f, list(initrd_entries(moddir, modules, applets)))
    os.replace(part, out_dir / INITRD)

    report(0.9, "metadata")
    files = {name: sha256_file(out_dir / name) for name in (ROOTFS, KERNEL, INITRD)}
    metadata: dict[str, Any] = {
        "name": NAME,
        "version": VERSION,
        "os": "busybox",
        "arch": "x86_64",
        "description": "static busybox system; boots as a container or as a VM",
        "kernel": {"source": f"host:{version}", "modules": modules},
        "resources": {"cpus": 1, "memory": 128 * 1024**2, "disk": 64 * 1024**2},
        "files": files,
        "build": {"content": content},
        "ct": {"halt_signal": "SIGUSR2", "init": "/sbin/init"},
        "vm": {
            "cmdline": CMDLINE,
            "machine": machine,
            "agent": AGENT_PORT,
            "ready_marker": READY_MARKER,
        },
    }
    tmp = out_dir / (METADATA + ".part")
    tmp.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out_dir / METADATA)
    report(1.0, "done")
    return TemplateImage.load(out_dir)
