"""The exact ``qemu-system-x86_64`` command line of a VM, as a pure function.

Benchmarks run the identical raw command to compare Corral against plain QEMU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from corral.domain.errors import InvalidInput

AGENT_PORT = "org.corral.agent"
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the terminating NUL
TB_MIN_MIB = 32
TB_MAX_MIB = 1024
REPORT_ORDER = 5
"""The guest's free page reporting order (``page_reporting.page_reporting_order``): free
blocks of 2^5 pages (128 KiB) and up are reported. The kernel's default, the pageblock
order 9, reports nothing until a zone has 64 MiB free above its low watermark: never in a
128 MiB guest (docs/architecture.md, "VM density: TCG buffer, free page reporting")."""


@dataclass(frozen=True)
class VmPaths:
    """Where one VM keeps its runtime files; ``run`` holds only what dies with the process."""

    directory: Path
    run: Path

    @property
    def qmp(self) -> Path:
        return self.run / "qmp.sock"

    @property
    def console(self) -> Path:
        return self.run / "console.sock"

    @property
    def agent(self) -> Path:
        return self.run / "agent.sock"

    @property
    def pidfile(self) -> Path:
        return self.run / "qemu.pid"

    @property
    def vnc(self) -> Path:
        return self.run / "vnc.sock"

    @property
    def agent_lock(self) -> Path:
        return self.run / "agent.lock"

    @property
    def console_log(self) -> Path:
        return self.directory / "console.log"

    def sockets(self) -> tuple[Path, ...]:
        return (self.qmp, self.console, self.agent, self.vnc)


@dataclass(frozen=True)
class VmNic:
    """One NIC as QEMU sees it: a tap on the host (made beforehand) and a virtio-net device."""

    index: int
    ifname: str
    mac: str

    @property
    def netdev_id(self) -> str:
        return f"net{self.index}"

    @property
    def device_id(self) -> str:
        return f"nic{self.index}"


HOTPLUG_PORTS = 16  # q35: one PCIe root port per possible NIC (MAX_NICS), so any can come later
DISK_PORTS = 8  # q35: one PCIe root port per possible data disk (domain.disks.MAX_DATA_DISKS)


@dataclass(frozen=True)
class VmDisk:
    """A data disk as QEMU sees it: a raw ``-blockdev`` node and a virtio-blk device whose
    serial is the disk's name (the guest finds it as /dev/disk/by-id/virtio-<name>)."""

    name: str
    path: Path
    index: int  # 1..DISK_PORTS, stable for the disk's life (its q35 root port)

    @property
    def node(self) -> str:
        return f"d-{self.name}"

    @property
    def device_id(self) -> str:
        return f"disk-{self.name}"


def disk_port(index: int) -> str:
    return f"dp{index - 1}"


def blockdev(disk: VmDisk) -> dict[str, object]:
    """The ``-blockdev`` / QMP ``blockdev-add`` arguments of a data disk."""
    return {"driver": "raw", "node-name": disk.node, "discard": "unmap",
            "file": {"driver": "file", "filename": str(disk.path), "discard": "unmap"}}


def disk_device(machine: str, disk: VmDisk) -> dict[str, str]:
    """The QMP ``device_add`` arguments (and, rendered, the ``-device`` value)."""
    _, bus = _machine(machine)
    device = {"driver": f"virtio-blk-{bus}", "drive": disk.node, "id": disk.device_id,
              "serial": disk.name}
    if machine == "q35":
        device["bus"] = disk_port(disk.index)
    return device


def disk_argv(machine: str, disks: tuple[VmDisk, ...]) -> list[str]:
    argv: list[str] = []
    if machine == "q35":
        for i in range(1, DISK_PORTS + 1):
            argv += ["-device", f"pcie-root-port,id={disk_port(i)},bus=pcie.0,"
                                f"chassis={HOTPLUG_PORTS + i}"]
    for disk in sorted(disks, key=lambda d: d.index):
        device = disk_device(machine, disk)
        driver = device.pop("driver")
        argv += ["-blockdev", json.dumps(blockdev(disk), separators=(",", ":")),
                 "-device", ",".join([driver, *(f"{k}={v}" for k, v in device.items())])]
    return argv


@dataclass(frozen=True)
class VmConfig:
    name: str
    cpus: int
    memory: int  # bytes
    accel: str
    kernel: Path
    initrd: Path | None
    append: str
    disk: Path
    paths: VmPaths
    machine: str = "microvm"
    nics: tuple[VmNic, ...] = ()
    max_cpus: int = 0  # vCPUs ``cpus`` can grow to live; 0: ``cpus``
    balloon: bool = True
    free_page_reporting: bool = False
    """The balloon's free page reporting: the guest tells QEMU which of its free pages
    (2 MiB blocks) it no longer uses and QEMU gives them back to the host (the guest
    kernel needs ``CONFIG_PAGE_REPORTING``; needs ``balloon``)."""
    tb_size: int = 0
    """TCG's translation buffer in MiB (``-accel tcg,tb-size=``); 0: QEMU's default (1 GiB
    of address space, touched as translations fill it). Unused under KVM."""
    paused: bool = False
    """Start with the vCPUs stopped (``-S``, QMP status ``prelaunch``): the guest runs nothing
    until QMP ``cont`` (a memory snapshot is loaded into it first)."""
    data_disks: tuple[VmDisk, ...] = ()
    firmware: bool = False
    """Boot through the machine's firmware (SeaBIOS) from the disk or ``cdrom`` instead of
    the template's kernel (foreign images); ``kernel``/``initrd``/``append`` are unused."""
    cdrom: Path | None = None
    """An ISO as an IDE CD-ROM, first in the boot order."""
    vnc: bool = False
    """A VGA card and its VNC server on ``paths.vnc`` (a Unix socket)."""


def smp(cfg: VmConfig) -> str:
    """microvm cannot hot-plug vCPUs: all exist from boot (the kernel's ``maxcpus=`` keeps
    the extra ones offline); q35/pc start ``cpus`` and have slots up to ``maxcpus``."""
    most = max(cfg.cpus, cfg.max_cpus)
    if cfg.machine == "microvm" or most == cfg.cpus:
        return str(most)
    return f"cpus={cfg.cpus},maxcpus={most}"


def tcg_buffer_mib(memory: int, wanted: int | None = None) -> int:
    """TCG's translation buffer (MiB) for a guest of ``memory`` bytes: a quarter of its RAM
    (QEMU's own rule before 5.0, which made it 1 GiB for every guest), at least 32 MiB and
    at most 1 GiB; ``wanted``: the template's own figure (its ``vm.tb_size_mib``: a guest
    whose code needs more, or less), within the same bounds."""
    size = wanted if wanted else memory // 4 // 1024**2
    return max(TB_MIN_MIB, min(TB_MAX_MIB, size))


def kernel_append(template_cmdline: str, hostname: str, tsc_khz: int | None,
                  tcg: bool = False, report_order: int | None = None) -> str:
    """The template's command line plus what Corral adds; later words win in the kernel.

    ``tcg``: ``tsc=reliable`` -- TCG's TSC is the host's clock, one for every vCPU, but the
    kernel finds it "unsynchronized", falls back to the jiffies clocksource and ticks 250
    times a second per vCPU even when idle; with a TSC clocksource and an always-running
    APIC timer (``-cpu qemu64,+arat``, ``build_argv``) an idle guest's tick stops (NOHZ):
    250 -> ~20 timer interrupts a second. ``report_order``: the guest's free page reporting
    order (``REPORT_ORDER``) unless the template sets its own."""
    words = template_cmdline.split()
    if not any(w.startswith("console=") for w in words):
        words.append("console=ttyS0")
    if not any(w.startswith("root=") for w in words):
        words.append("root=/dev/vda")
    if tsc_khz:
        words.append(f"tsc_early_khz={tsc_khz}")
    if tcg and not any(w.startswith("tsc=") for w in words):
        words.append("tsc=reliable")
    if report_order is not None and not any(
            w.startswith("page_reporting.page_reporting_order=") for w in words):
        words.append(f"page_reporting.page_reporting_order={report_order}")
    words.append(f"corral.hostname={hostname}")
    return " ".join(words)


def _machine(machine: str) -> tuple[str, str]:
    """(-machine value, virtio device suffix) per machine type."""
    if machine == "microvm":
        # ACPI on: the power button (system_powerdown) and poweroff work; virtio over MMIO.
        return "microvm,acpi=on,isa-serial=on,pit=on,pic=on,rtc=on", "device"
    if machine in ("q35", "pc"):
        return machine, "pci"
    raise InvalidInput(f"machine '{machine}' is not one of: microvm, q35, pc")


def netdev_tap(nic: VmNic) -> str:
    """The tap backend: an existing device by name, no scripts, never vhost (it may be absent,
    and vhost=on aborts QEMU there)."""
    return f"tap,id={nic.netdev_id},ifname={nic.ifname},script=no,downscript=no,vhost=off"


def nic_device(machine: str, nic: VmNic) -> str:
    """The guest device: virtio-mmio on microvm, on its own PCIe root port on q35 (so it can
    be unplugged, and so can one added later), on the root bus on pc (ACPI hot-plug)."""
    _, bus = _machine(machine)
    value = f"virtio-net-{bus},netdev={nic.netdev_id},mac={nic.mac},id={nic.device_id}"
    if machine == "q35":
        value += f",bus={root_port(nic.index)}"
    return value


def root_port(index: int) -> str:
    return f"rp{index}"


def nic_argv(machine: str, nics: tuple[VmNic, ...]) -> list[str]:
    argv: list[str] = []
    if machine == "q35":
        for i in range(HOTPLUG_PORTS):
            argv += ["-device", f"pcie-root-port,id={root_port(i)},bus=pcie.0,chassis={i + 1}"]
    for nic in sorted(nics, key=lambda n: n.index):
        argv += ["-netdev", netdev_tap(nic), "-device", nic_device(machine, nic)]
    return argv


def _socket_path(path: Path) -> Path:
    if len(str(path)) > MAX_SOCKET_PATH:
        raise InvalidInput(
            f"socket path '{path}' is longer than {MAX_SOCKET_PATH} bytes; "
            "use a shorter instance directory"
        )
    return path


def chardev_socket(ident: str, path: Path, extra: str = "") -> str:
    _socket_path(path)
    return f"socket,id={ident},path={path},server=on,wait=off{extra}"


def build_argv(qemu: str, cfg: VmConfig) -> list[str]:
    """The full argv; QEMU daemonizes and writes its pid file once the VM is running."""
    machine, bus = _machine(cfg.machine)
    if cfg.firmware and cfg.machine == "microvm":
        raise InvalidInput("microvm has no firmware to boot a disk image with; use q35 or pc")
    p = cfg.paths
    argv = [
        qemu,
        "-name", f"{cfg.name},process=corral-{cfg.name}"[:200],
        # Guest RAM without a swap reservation (MAP_NORESERVE): lazily allocated, so a VM
        # may be given more memory than the host has (over-commitment, policed by Corral);
        # mergeable (QEMU's default, said here): KSM merges it when the host policy has
        # ksm=on (host/ksm.py).
        "-object",
        f"memory-backend-ram,id=ram,size={cfg.memory // 1024**2}M,reserve=off,merge=on",
        "-machine", f"{machine},memory-backend=ram",
        "-accel", accel_option(cfg),
        "-m", f"{cfg.memory // 1024**2}M",
        "-smp", smp(cfg),
        # TCG: the default CPU model plus ARAT (the APIC timer keeps running in idle), so
        # the guest's tick can stop while it idles (see ``kernel_append``)
        *(["-cpu", "qemu64,+arat"] if cfg.accel.startswith("tcg") else []),
        "-nodefaults", "-no-user-config", "-display", "none",
    ]  # fmt: skip
    root_boot = ""
    if cfg.firmware:
        root_boot = ",bootindex=1"
        if cfg.cdrom is not None:
            argv += ["-drive", f"id=cd0,file={_comma(cfg.cdrom)},format=raw,if=none,"
                               "media=cdrom,readonly=on",
                     "-device", "ide-cd,drive=cd0,id=cdrom,bootindex=0"]
    else:
        argv += ["-kernel", str(cfg.kernel)]
        if cfg.initrd is not None:
            argv += ["-initrd", str(cfg.initrd)]
        argv += ["-append", cfg.append]
    if cfg.vnc:
        argv += ["-device", "VGA,id=video", "-vnc", f"unix:{_socket_path(p.vnc)}"]
    argv += [
        "-drive", f"id=root,file={_comma(cfg.disk)},format=raw,if=none,discard=unmap",
        "-device", f"virtio-blk-{bus},drive=root,id=root-disk{root_boot}",
        *(["-device", balloon_device(bus, cfg)] if cfg.balloon else []),
        "-device", f"virtio-serial-{bus},id=vser",
        "-chardev", chardev_socket("agent", p.agent),
        "-device", f"virtserialport,bus=vser.0,chardev=agent,name={AGENT_PORT}",
        "-chardev", chardev_socket("console", p.console, f",logfile={p.console_log},logappend=on"),
        "-serial", "chardev:console",
        "-chardev", chardev_socket("qmp", p.qmp),
        "-mon", "chardev=qmp,mode=control",
        "-pidfile", str(p.pidfile),
        "-daemonize",
    ]  # fmt: skip
    if cfg.paused:
        argv.append("-S")
    return argv + disk_argv(cfg.machine, cfg.data_disks) + nic_argv(cfg.machine, cfg.nics)


def accel_option(cfg: VmConfig) -> str:
    """``-accel``: the accelerator, with TCG's translation buffer size when one is set."""
    if cfg.tb_size and cfg.accel == "tcg":
        return f"tcg,tb-size={cfg.tb_size}"
    return cfg.accel


def balloon_device(bus: str, cfg: VmConfig) -> str:
    value = f"virtio-balloon-{bus},id=balloon"
    return value + (",free-page-reporting=on" if cfg.free_page_reporting else "")


def _comma(path: Path) -> str:
    """A path inside a QEMU option value: commas are doubled."""
    return str(path).replace(",", ",,")
