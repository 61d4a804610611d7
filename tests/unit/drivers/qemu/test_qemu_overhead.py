"""drivers/qemu/overhead: QEMU's memory beyond its guest's RAM, from its command line and
its smaps (a /proc laid out in a directory; the format is the kernel's)."""

from __future__ import annotations

from pathlib import Path

from corral.drivers.qemu.overhead import guest_ram, overhead, pss_beyond

MiB = 1024**2


def _mapping(head: str, size_kib: int, pss_kib: int) -> str:
    return (f"{head}\nSize:           {size_kib} kB\nRss:            {pss_kib} kB\n"
            f"Pss:            {pss_kib} kB\nPss_Dirty:      {pss_kib} kB\n"
            "VmFlags: rd wr mr mw me ac sd\n")


SMAPS = "".join([
    _mapping("5576f2eaa000-5576f3441000 r-xp 00000000 fe:00 123 /usr/bin/qemu-system-x86_64",
             5724, 5336),
    # TCG's code buffer: the guest's size too, but executable
    _mapping("7f0000000000-7f0008000000 rwxp 00000000 00:00 0", 131072, 20000),
    _mapping("7f9e6be00000-7f9e73e00000 rw-p 00000000 00:00 0", 131072, 92604),  # the RAM
    _mapping("7f9e60000000-7f9e63edb000 r--p 00000000 fe:00 9 /srv/tiny/vmlinux", 64364, 30720),
    _mapping("7f9e50021000-7f9e54000000 rw-p 00000000 00:00 0", 65404, 100),
])


def test_the_guest_ram_is_the_ram_memory_backend_of_the_command_line() -> None:
    argv = ["qemu-system-x86_64", "-name", "db1", "-object",
            "memory-backend-ram,id=ram,size=128M,reserve=off,merge=on", "-m", "128M"]
    assert guest_ram(argv) == 128 * MiB
    assert guest_ram(["qemu-system-x86_64", "-m", "128M"]) is None
    assert guest_ram(["x", "-object", "memory-backend-ram,id=other,size=1G"]) is None


def test_the_overhead_is_every_pss_but_the_not_executable_anonymous_ram_mapping() -> None:
    assert pss_beyond(SMAPS, 128 * MiB) == (5336 + 20000 + 30720 + 100) * 1024
    assert pss_beyond(SMAPS, 256 * MiB) is None  # no mapping of that size: not known


def test_read_from_proc(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "cmdline").write_bytes(
        b"qemu-system-x86_64\0-object\0memory-backend-ram,id=ram,size=128M\0")
    (tmp_path / "42" / "smaps").write_text(SMAPS)
    assert overhead(42, tmp_path) == (5336 + 20000 + 30720 + 100) * 1024
    assert overhead(43, tmp_path) is None  # gone
