from __future__ import annotations

import io
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from corral.templates.builders.cpio import Entry, write_newc
from corral.templates.builders.tiny import has_interpreter


def test_newc_archive_unpacks_with_cpio(tmp_path: Path) -> None:
    if shutil.which("cpio") is None:
        pytest.skip("cpio is not installed (Debian package: cpio)")
    out = io.BytesIO()
    write_newc(
        out,
        [
            Entry("bin", stat.S_IFDIR | 0o755),
            Entry("bin/tool", stat.S_IFREG | 0o755, b"#!/bin/sh\necho 1\n"),
            Entry("bin/link", stat.S_IFLNK | 0o777, b"tool"),
            Entry("odd", stat.S_IFREG | 0o600, b"xyz"),
        ],
    )
    assert len(out.getvalue()) % 4 == 0
    subprocess.run(["cpio", "-id", "--quiet"], input=out.getvalue(), cwd=tmp_path, check=True)
    assert (tmp_path / "bin/tool").read_bytes() == b"#!/bin/sh\necho 1\n"
    assert (tmp_path / "bin/tool").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "bin/link").readlink() == Path("tool")
    assert (tmp_path / "odd").read_bytes() == b"xyz"


def test_newc_refuses_device_nodes() -> None:
    with pytest.raises(ValueError, match="not a file, directory or symlink"):
        write_newc(io.BytesIO(), [Entry("dev/null", stat.S_IFCHR | 0o666)])


def elf_with_program_headers(types: list[int]) -> bytes:
    header = bytearray(64)
    header[:5] = b"\x7fELF\x02"
    header[0x20:0x28] = (64).to_bytes(8, "little")
    header[0x36:0x38] = (56).to_bytes(2, "little")
    header[0x38:0x3A] = len(types).to_bytes(2, "little")
    for kind in types:
        header += kind.to_bytes(4, "little") + bytes(52)
    return bytes(header)


def test_static_binaries_have_no_interpreter() -> None:
    assert not has_interpreter(elf_with_program_headers([1, 1, 4]))
    assert has_interpreter(elf_with_program_headers([6, 3, 1]))


def test_host_busybox_static_is_static() -> None:
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.skip("busybox is not installed (Debian package: busybox-static)")
    assert not has_interpreter(busybox.read_bytes()[:65536])
