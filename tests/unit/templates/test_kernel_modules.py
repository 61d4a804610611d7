from __future__ import annotations

import gzip
import lzma

import pytest

from corral.domain.errors import HostFailure, Unsupported
from corral.templates.builders.kernel import ModuleIndex, extract_vmlinux, module_name

V = "kernel/drivers/virtio"
DEP = f"""\
{V}/virtio_ring.ko:
{V}/virtio.ko: {V}/virtio_ring.ko
{V}/virtio_mmio.ko: {V}/virtio.ko {V}/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: {V}/virtio.ko {V}/virtio_ring.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/crypto/crc32c_generic.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/a.ko: kernel/b.ko
kernel/b.ko: kernel/a.ko
"""
SOFTDEP = "softdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c\n"
ALIAS = "alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\n"
BUILTIN = "kernel/drivers/acpi/button.ko\n"


def index() -> ModuleIndex:
    return ModuleIndex.parse(DEP, SOFTDEP, ALIAS, BUILTIN)


def test_module_names_normalise() -> None:
    assert module_name("kernel/arch/x86/crypto/crc32c-intel.ko") == "crc32c_intel"
    assert module_name("kernel/fs/ext4/ext4.ko.xz") == "ext4"
    assert module_name("virtio-blk") == "virtio_blk"


def test_dependencies_come_first_and_once() -> None:
    order = index().load_order(["virtio_mmio", "virtio_blk", "ext4", "button"])
    names = [module_name(p) for p in order]
    assert names == [
        "virtio_ring", "virtio", "virtio_mmio", "virtio_blk",
        "crc32c_intel", "crc32c_generic", "crc16", "mbcache", "jbd2", "ext4",
    ]  # fmt: skip
    assert order[0] == "kernel/drivers/virtio/virtio_ring.ko"


def test_unknown_module_and_cycles_are_errors() -> None:
    with pytest.raises(Unsupported, match="'nope' is neither a module nor built in"):
        index().load_order(["nope"])
    with pytest.raises(HostFailure, match="cycle"):
        index().load_order(["a"])


ELF = b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 64


def test_vmlinux_is_found_after_any_prefix_for_xz_and_gzip() -> None:
    setup = b"MZ" + b"\0" * 1000 + b"HdrS"
    xz = lzma.compress(ELF, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    assert extract_vmlinux(setup + xz + b"trailing") == ELF
    # A stray gzip magic that is not a stream must not stop the search.
    assert extract_vmlinux(setup + b"\x1f\x8b\x08junk" + gzip.compress(ELF)) == ELF
    assert extract_vmlinux(ELF) == ELF


def test_no_kernel_inside_is_a_clear_error() -> None:
    with pytest.raises(HostFailure, match="no uncompressible ELF kernel"):
        extract_vmlinux(b"MZ" + gzip.compress(b"not an elf"))
    with pytest.raises(HostFailure, match="zstd"):
        extract_vmlinux(b"MZ\x28\xb5\x2f\xfd" + b"\0" * 64)
