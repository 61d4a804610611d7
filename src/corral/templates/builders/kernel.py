"""Kernel work for VM templates: find the host kernel, uncompress it, pick its modules.

The uncompressed ``vmlinux`` boots much faster than the ``bzImage`` under TCG (the guest
does not decompress itself), and Debian builds virtio/ext4 as modules, so the initramfs
carries the modules a VM needs in dependency order (HOST-NOTES.md).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from corral.domain.errors import HostFailure, Unsupported

ELF_MAGIC = b"\x7fELF"

# (magic, name) of the compressors a bzImage payload can use; searched in the file.
_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b\x08", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\x5d\x00\x00", "lzma"),
    (b"\x02\x21\x4c\x18", "lz4"),
)


def host_kernel_version() -> str:
    """The newest kernel with both ``/boot/vmlinuz-<v>`` and ``/lib/modules/<v>``."""
    versions = sorted(
        p.name.removeprefix("vmlinuz-")
        for p in Path("/boot").glob("vmlinuz-*")
        if (Path("/lib/modules") / p.name.removeprefix("vmlinuz-") / "modules.dep").exists()
    )
    if not versions:
        raise Unsupported(
            "no kernel with modules found in /boot and /lib/modules "
            "(Debian package: linux-image-amd64)"
        )
    return versions[-1]


def _decompress(kind: str, data: bytes) -> bytes:
    if kind == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)
    if kind == "lzma":
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(data)
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
    if kind == "bzip2":
        return bz2.BZ2Decompressor().decompress(data)
    raise Unsupported(f"kernels compressed with {kind} cannot be unpacked here")


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The uncompressed ELF kernel inside a bzImage: try each compression magic found, in
    file order, and keep the first payload that decompresses to an ELF image."""
    if bzimage.startswith(ELF_MAGIC):
        return bzimage
    candidates: list[tuple[int, str]] = []
    for magic, kind in _MAGICS:
        start = bzimage.find(magic)
        while start != -1:
            candidates.append((start, kind))
            start = bzimage.find(magic, start + 1)
    candidates.sort()
    unsupported: set[str] = set()
    for offset, kind in candidates:
        try:
            out = _decompress(kind, bzimage[offset:])
        except Unsupported:
            unsupported.add(kind)
            continue
        except (lzma.LZMAError, zlib.error, OSError, EOFError, ValueError):
            continue
        if out.startswith(ELF_MAGIC):
            return out
    hint = f" (found {', '.join(sorted(unsupported))} data)" if unsupported else ""
    raise HostFailure(f"no uncompressible ELF kernel found in the bzImage{hint}")


def write_vmlinux(vmlinuz: Path, dest: Path) -> None:
    data = extract_vmlinux(vmlinuz.read_bytes())
    tmp = dest.with_suffix(".part")
    tmp.write_bytes(data)
    os.replace(tmp, dest)


def _gunzip_if_needed(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def module_name(path_or_name: str) -> str:
    """``kernel/fs/ext4/ext4.ko`` -> ``ext4``; dashes and underscores are the same."""
    base = path_or_name.rsplit("/", 1)[-1]
    for suffix in (".gz", ".xz", ".zst", ".ko"):
        base = base.removesuffix(suffix)
    return base.replace("-", "_")


@dataclass(frozen=True)
class ModuleIndex:
    """What ``/lib/modules/<v>/modules.{dep,softdep,alias,builtin}`` say, parsed."""

    paths: dict[str, str]  # name -> path relative to the modules directory
    deps: dict[str, tuple[str, ...]]  # name -> names it needs loaded first
    soft_pre: dict[str, tuple[str, ...]]  # name -> names or aliases to load first if present
    aliases: dict[str, tuple[str, ...]]  # alias -> module names
    builtin: frozenset[str]

    @classmethod
    def parse(cls, dep: str, softdep: str = "", alias: str = "", builtin: str = "") -> ModuleIndex:
        paths: dict[str, str] = {}
        deps: dict[str, tuple[str, ...]] = {}
        for line in dep.splitlines():
            if ":" not in line:
                continue
            path, _, rest = line.partition(":")
            name = module_name(path.strip())
            paths[name] = path.strip()
            deps[name] = tuple(module_name(d) for d in rest.split())
        soft: dict[str, tuple[str, ...]] = {}
        for line in softdep.splitlines():
            words = line.split()
            if len(words) < 3 or words[0] != "softdep":
                continue
            pre: list[str] = []
            section = ""
            for word in words[2:]:
                if word in ("pre:", "post:"):
                    section = word
                elif section == "pre:":
                    pre.append(word)
            soft[module_name(words[1])] = tuple(pre)
        aliases: dict[str, list[str]] = {}
        for line in alias.splitlines():
            words = line.split()
            if len(words) == 3 and words[0] == "alias":
                aliases.setdefault(words[1], []).append(module_name(words[2]))
        built = frozenset(module_name(line.strip()) for line in builtin.splitlines() if line)
        return cls(paths, deps, soft, {k: tuple(v) for k, v in aliases.items()}, built)

    @classmethod
    def load(cls, moddir: Path) -> ModuleIndex:
        def text(name: str) -> str:
            path = moddir / name
            return path.read_text() if path.exists() else ""

        if not (moddir / "modules.dep").exists():
            raise Unsupported(f"'{moddir}/modules.dep' is missing (run depmod on the host)")
        return cls.parse(
            text("modules.dep"),
            text("modules.softdep"),
            text("modules.alias"),
            text("modules.builtin"),
        )

    def _resolve_soft(self, word: str) -> list[str]:
        name = module_name(word)
        if name in self.paths:
            return [name]
        return [m for m in self.aliases.get(word, ()) if m in self.paths]

    def load_order(self, wanted: Iterable[str]) -> list[str]:
        """Module paths to insmod, dependencies (and soft pre-dependencies) first, each once.

        A wanted module built into the kernel is skipped; one that is neither a module nor
        built in is an error naming it.
        """
        order: list[str] = []
        seen: set[str] = set()

        def visit(name: str, chain: tuple[str, ...]) -> None:
            if name in seen:
                return
            if name in chain:
                raise HostFailure(f"module dependency cycle: {' -> '.join((*chain, name))}")
            for pre in self.soft_pre.get(name, ()):
                for soft in self._resolve_soft(pre):
                    visit(soft, (*chain, name))
            for dep in self.deps.get(name, ()):
                visit(dep, (*chain, name))
            seen.add(name)
            order.append(self.paths[name])

        for want in wanted:
            name = module_name(want)
            if name in self.paths:
                visit(name, ())
            elif name not in self.builtin:
                raise Unsupported(f"kernel module '{want}' is neither a module nor built in")
        return order
