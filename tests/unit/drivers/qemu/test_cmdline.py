from __future__ import annotations

from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput
from corral.drivers.qemu.cmdline import (
    TB_MAX_MIB,
    TB_MIN_MIB,
    VmConfig,
    VmPaths,
    build_argv,
    kernel_append,
    tcg_buffer_mib,
)


def config(directory: Path, **overrides: object) -> VmConfig:
    values: dict[str, object] = {
        "name": "web1",
        "cpus": 2,
        "memory": 256 * 1024**2,
        "accel": "tcg",
        "kernel": Path("/t/vmlinux"),
        "initrd": Path("/t/initrd.img"),
        "append": "console=ttyS0 root=/dev/vda",
        "disk": directory / "root.img",
        "paths": VmPaths(directory, directory / "run"),
    }
    values.update(overrides)
    return VmConfig(**values)  # type: ignore[arg-type]


def option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv) if word == flag]


def test_microvm_command_line() -> None:
    argv = build_argv("/usr/bin/qemu-system-x86_64", config(Path("/vms/web1")))
    assert argv[0] == "/usr/bin/qemu-system-x86_64"
    assert option(argv, "-machine") == [
        "microvm,acpi=on,isa-serial=on,pit=on,pic=on,rtc=on,memory-backend=ram"]
    assert option(argv, "-object") == [
        "memory-backend-ram,id=ram,size=256M,reserve=off,merge=on"]
    assert option(argv, "-accel") == ["tcg"]
    assert option(argv, "-m") == ["256M"]
    assert option(argv, "-smp") == ["2"]
    assert option(argv, "-kernel") == ["/t/vmlinux"]
    assert option(argv, "-initrd") == ["/t/initrd.img"]
    assert option(argv, "-pidfile") == ["/vms/web1/run/qemu.pid"]
    assert "-daemonize" in argv
    assert "-nodefaults" in argv
    devices = option(argv, "-device")
    assert "virtio-blk-device,drive=root,id=root-disk" in devices
    assert "virtserialport,bus=vser.0,chardev=agent,name=org.corral.agent" in devices
    chardevs = option(argv, "-chardev")
    assert (
        "socket,id=console,path=/vms/web1/run/console.sock,server=on,wait=off,"
        "logfile=/vms/web1/console.log,logappend=on"
    ) in chardevs
    assert "socket,id=qmp,path=/vms/web1/run/qmp.sock,server=on,wait=off" in chardevs
    assert option(argv, "-mon") == ["chardev=qmp,mode=control"]
    assert option(argv, "-serial") == ["chardev:console"]


def test_pc_machines_use_virtio_pci_and_no_initrd_is_allowed() -> None:
    argv = build_argv("qemu", config(Path("/v"), machine="q35", initrd=None, accel="kvm"))
    assert option(argv, "-machine") == ["q35,memory-backend=ram"]
    assert "-initrd" not in argv
    assert "virtio-blk-pci,drive=root,id=root-disk" in option(argv, "-device")


def test_unknown_machine_and_long_socket_paths_are_refused() -> None:
    with pytest.raises(InvalidInput, match="machine 'sparc'"):
        build_argv("qemu", config(Path("/v"), machine="sparc"))
    deep = Path("/" + "d" * 120)
    with pytest.raises(InvalidInput, match="longer than 107 bytes"):
        build_argv("qemu", config(deep))


def test_kernel_append_adds_what_corral_needs() -> None:
    assert kernel_append("quiet", "vm1", 2596136) == (
        "quiet console=ttyS0 root=/dev/vda tsc_early_khz=2596136 corral.hostname=vm1"
    )
    assert kernel_append("console=hvc0 root=/dev/vdb", "a", None) == (
        "console=hvc0 root=/dev/vdb corral.hostname=a"
    )
    # TCG: a TSC clocksource so an idle guest's tick can stop (a template's own tsc= wins)
    assert kernel_append("quiet", "a", None, tcg=True) == (
        "quiet console=ttyS0 root=/dev/vda tsc=reliable corral.hostname=a")
    assert "tsc=reliable" not in kernel_append("tsc=unstable", "a", None, tcg=True)


def test_tcg_guests_get_an_always_running_apic_timer() -> None:
    assert option(build_argv("qemu", config(Path("/vms/web1"))), "-cpu") == ["qemu64,+arat"]


def test_paused_start_stops_the_vcpus_until_cont() -> None:
    assert "-S" not in build_argv("qemu", config(Path("/vms/web1")))
    assert "-S" in build_argv("qemu", config(Path("/vms/web1"), paused=True))


def test_data_disks_are_blockdev_nodes_with_their_name_as_serial() -> None:
    import json

    from corral.drivers.qemu.cmdline import VmDisk

    disks = (VmDisk("logs", Path("/p/logs.img"), 2), VmDisk("data", Path("/p/data.img"), 1))
    argv = build_argv("qemu", config(Path("/vms/web1"), data_disks=disks))
    nodes = [json.loads(v) for v in option(argv, "-blockdev")]
    assert [n["node-name"] for n in nodes] == ["d-data", "d-logs"]  # by index
    assert nodes[0]["file"] == {"driver": "file", "filename": "/p/data.img", "discard": "unmap"}
    devices = option(argv, "-device")
    assert "virtio-blk-device,drive=d-data,id=disk-data,serial=data" in devices
    assert not any(d.startswith("pcie-root-port") for d in devices)  # microvm: no ports


def test_q35_has_a_root_port_per_possible_data_disk() -> None:
    from corral.drivers.qemu.cmdline import DISK_PORTS, VmDisk

    disk = VmDisk("data", Path("/p/data.img"), 3)
    argv = build_argv("qemu", config(Path("/vms/web1"), machine="q35", data_disks=(disk,)))
    devices = option(argv, "-device")
    ports = [d for d in devices if d.startswith("pcie-root-port,id=dp")]
    assert len(ports) == DISK_PORTS
    assert "pcie-root-port,id=dp0,bus=pcie.0,chassis=17" in ports  # after the 16 NIC ports
    assert "virtio-blk-pci,drive=d-data,id=disk-data,serial=data,bus=dp2" in devices


def test_firmware_boot_with_cdrom_and_vnc() -> None:
    cfg = config(Path("/vms/web1"), machine="q35", firmware=True,
                 cdrom=Path("/vms/web1/cdrom.iso"), vnc=True)
    argv = build_argv("qemu", cfg)
    assert "-kernel" not in argv and "-append" not in argv and "-initrd" not in argv
    devices = option(argv, "-device")
    assert "ide-cd,drive=cd0,id=cdrom,bootindex=0" in devices
    assert "virtio-blk-pci,drive=root,id=root-disk,bootindex=1" in devices
    assert "VGA,id=video" in devices
    assert option(argv, "-vnc") == ["unix:/vms/web1/run/vnc.sock"]
    assert any("media=cdrom,readonly=on" in d for d in option(argv, "-drive"))


def test_firmware_boot_is_refused_on_microvm() -> None:
    with pytest.raises(InvalidInput, match="microvm has no firmware"):
        build_argv("qemu", config(Path("/vms/web1"), firmware=True))


def test_commas_in_disk_paths_are_escaped() -> None:
    argv = build_argv("qemu", config(Path("/vms/a,b")))
    assert any(d.startswith("id=root,file=/vms/a,,b/root.img,") for d in option(argv, "-drive"))


def test_tcg_buffer_and_free_page_reporting_on_the_command_line() -> None:
    argv = build_argv("qemu", config(Path("/v"), tb_size=32, free_page_reporting=True))
    assert option(argv, "-accel") == ["tcg,tb-size=32"]
    assert "virtio-balloon-device,id=balloon,free-page-reporting=on" in option(argv, "-device")
    kvm = build_argv("qemu", config(Path("/v"), accel="kvm", tb_size=32))
    assert option(kvm, "-accel") == ["kvm"]
    assert "virtio-balloon-device,id=balloon" in option(kvm, "-device")


def test_tcg_buffer_is_a_quarter_of_the_guest_within_bounds() -> None:
    assert tcg_buffer_mib(128 * 1024**2) == 32
    assert tcg_buffer_mib(64 * 1024**2) == TB_MIN_MIB
    assert tcg_buffer_mib(1024**3) == 256
    assert tcg_buffer_mib(16 * 1024**3) == TB_MAX_MIB
    assert tcg_buffer_mib(128 * 1024**2, wanted=96) == 96  # the template's own figure


def test_kernel_append_sets_the_page_reporting_order_unless_the_template_does() -> None:
    assert kernel_append("quiet", "a", None, report_order=5).endswith(
        "page_reporting.page_reporting_order=5 corral.hostname=a")
    mine = kernel_append("page_reporting.page_reporting_order=7", "a", None, report_order=5)
    assert mine.count("page_reporting_order") == 1
