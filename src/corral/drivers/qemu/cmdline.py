"""The exact ``qemu-system-x86_64`` command line of a VM, as a pure function.

Benchmarks run the identical raw command to compare Corral against plain QEMU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from corral.domain.errors import InvalidInput

AGENT_PORT = "org.corral.agent"
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the terminating NUL


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
    def agent_lock(self) -> Path:
        return self.run / "agent.lock"

    @property
    def console_log(self) -> Path:
        return self.directory / "console.log"

    def sockets(self) -> tuple[Path, ...]:
        return (self.qmp, self.console, self.agent)


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
    paused: bool = False
    """Start with the vCPUs stopped (``-S``, QMP status ``prelaunch``): the guest runs nothing
    until QMP ``cont`` (a memory snapshot is loaded into it first)."""


def smp(cfg: VmConfig) -> str:
    """microvm cannot hot-plug vCPUs: all exist from boot (the kernel's ``maxcpus=`` keeps
    the extra ones offline); q35/pc start ``cpus`` and have slots up to ``maxcpus``."""
    most = max(cfg.cpus, cfg.max_cpus)
    if cfg.machine == "microvm" or most == cfg.cpus:
        return str(most)
    return f"cpus={cfg.cpus},maxcpus={most}"


def kernel_append(template_cmdline: str, hostname: str, tsc_khz: int | None) -> str:
    """The template's command line plus what Corral adds; later words win in the kernel."""
    words = template_cmdline.split()
    if not any(w.startswith("console=") for w in words):
        words.append("console=ttyS0")
    if not any(w.startswith("root=") for w in words):
        words.append("root=/dev/vda")
    if tsc_khz:
        words.append(f"tsc_early_khz={tsc_khz}")
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


def chardev_socket(ident: str, path: Path, extra: str = "") -> str:
    if len(str(path)) > MAX_SOCKET_PATH:
        raise InvalidInput(
            f"socket path '{path}' is longer than {MAX_SOCKET_PATH} bytes; "
            "use a shorter instance directory"
        )
    return f"socket,id={ident},path={path},server=on,wait=off{extra}"


def build_argv(qemu: str, cfg: VmConfig) -> list[str]:
    """The full argv; QEMU daemonizes and writes its pid file once the VM is running."""
    machine, bus = _machine(cfg.machine)
    p = cfg.paths
    argv = [
        qemu,
        "-name", f"{cfg.name},process=corral-{cfg.name}"[:200],
        # Guest RAM without a swap reservation (MAP_NORESERVE): lazily allocated, so a VM
        # may be given more memory than the host has (over-commitment, policed by Corral).
        "-object", f"memory-backend-ram,id=ram,size={cfg.memory // 1024**2}M,reserve=off",
        "-machine", f"{machine},memory-backend=ram",
        "-accel", cfg.accel,
        "-m", f"{cfg.memory // 1024**2}M",
        "-smp", smp(cfg),
        "-nodefaults", "-no-user-config", "-display", "none",
        "-kernel", str(cfg.kernel),
    ]  # fmt: skip
    if cfg.initrd is not None:
        argv += ["-initrd", str(cfg.initrd)]
    argv += [
        "-append", cfg.append,
        "-drive", f"id=root,file={cfg.disk},format=raw,if=none,discard=unmap",
        "-device", f"virtio-blk-{bus},drive=root,id=root-disk",
        *(["-device", f"virtio-balloon-{bus},id=balloon"] if cfg.balloon else []),
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
    return argv + nic_argv(cfg.machine, cfg.nics)
