"""The LXC configuration of one container, rendered as text (pure: no I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from corral.domain.errors import InvalidInput
from corral.domain.names import is_decimal
from corral.domain.network import NetworkType, NicSpec
from corral.domain.resources import Resources
from corral.drivers.cgroup_limits import limit_writes, lxc_config_lines
from corral.host.cgroupfs import corral_root
from corral.host.cgroups import CgroupLayout
from corral.host.idmap import IdMap

DEFAULT_INCLUDE_DIR = Path("/usr/share/lxc/config")
# Every container's cgroup sits under <hierarchy>/<corral_root()>/ct/<name> (monitor: .../monitor).
INNER = "inner"
USERNS_DROPS = ("mac_admin", "mac_override", "sys_time", "sys_module", "sys_rawio")
"""Capabilities an unprivileged container loses from its bounding set (common.conf's list)."""
"""LXC runs the container's processes one level below its group (``.../ct/<name>/inner``)."""
CONSOLE_LOG_SIZE = "1MB"
TTYS = 1
PTYS = 64
_SIGNAL_PREFIX = "SIG"
RESOURCES_MARKER = "# Resources (rewritten by `corral set`; everything below this line)"
_SIGNAL = re.compile(r"^SIG(RTMIN\+\d+|RTMAX-\d+|[A-Z][A-Z0-9]*)$")
TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOOK_SHELL = f"/bin/sh -c 'PATH={TOOL_PATH}; "
"""How every hook's shell script begins: it sets its own PATH, because ``lxc-start`` runs
with one that lacks the shadow tools' directory (drivers/lxc/startenv.py), and the hooks
inherit it."""


@dataclass(frozen=True)
class ContainerConfig:
    """What one container's configuration is made from."""

    lxc_name: str
    hostname: str
    disk_path: Path
    console_log: Path
    log_file: Path
    halt_signal: str
    resources: Resources
    idmap: IdMap | None
    """None: a privileged container (no user namespace)."""
    cgroups: CgroupLayout
    rootfs_mount: Path
    """Where the root image is loop-mounted on the host while the container runs."""
    include_dir: Path = DEFAULT_INCLUDE_DIR
    swap_limit: bool = False
    """Whether the host can limit swap (v1 memsw files / v2 memory.swap.max)."""
    nics: tuple[NicSpec, ...] = ()
    data_mounts: tuple[tuple[Path, str], ...] = ()
    """Data disks: (where the image is loop-mounted on the host, path inside)."""


def cgroup_dirs(lxc_name: str) -> dict[str, str]:
    """The cgroup paths (relative to each hierarchy's root) the container and its monitor use."""
    return {
        "container": f"{corral_root()}/ct/{lxc_name}",
        "monitor": f"{corral_root()}/monitor/{lxc_name}",
        "pivot": f"{corral_root()}/pivot",
    }


def normalise_signal(name: str) -> str:
    """'usr2', 'SIGUSR2' or '12' -> the form lxc.signal.* accepts ('SIGUSR2' or '12')."""
    value = name.strip().upper()
    if is_decimal(value):
        return value
    if not value.startswith(_SIGNAL_PREFIX):
        value = _SIGNAL_PREFIX + value
    if not _SIGNAL.match(value):
        raise InvalidInput(f"'{name}' is not a signal name")
    return value


def _limit_lines(cgroups: CgroupLayout, resources: Resources, swap_limit: bool) -> list[str]:
    """CPU, memory and pids limits for whichever hierarchy holds each controller here (IO
    limits need the loop device, known only once the container runs)."""
    return lxc_config_lines(limit_writes(cgroups, resources, ct=True, memsw=swap_limit))


QUIESCING = "corral-quiescing"
"""In the run directory while a move makes the stopped container's file systems read-only
(drivers/lxc/quiesce.py): the post-stop hooks wait (up to ~3 s) before unmounting them, so
the hook does not unmount the root first and leave the move to wait for the kernel's
release of the image instead."""


def hold_unmount(rootfs_mount: Path) -> str:
    """The post-stop hook's wait for ``QUIESCING`` (shell, ending in "; ")."""
    flag = rootfs_mount.parent / QUIESCING
    return (f"i=0; while [ -e {flag} ] && [ $i -lt 300 ]; do sleep 0.01; i=$((i+1)); "
            "done; ")


def _rootfs_lines(config: ContainerConfig) -> list[str]:
    # The root image holds ids as the template has them (0 = root), so a VM boots the very
    # same disk. The driver loop-mounts it on the host before lxc-start (LXC's loop: backend
    # cannot be idmapped: "Idmapped rootfs currently only supports the dir storage driver");
    # an unprivileged container maps it into its user namespace with an idmapped mount
    # (kernel >= 5.12, ext4 supports it). Privileged: plain, and the devices cgroup keeps
    # /dev/loop* away from it. The hook unmounts however the container stops (lxc-stop or a
    # poweroff inside); unmounting detaches the loop device (autoclear).
    lines = [f"lxc.rootfs.path = dir:{config.rootfs_mount}"]
    if config.idmap is not None:
        lines.append("lxc.rootfs.options = idmap=container")
    lines.append(f"lxc.hook.post-stop = {HOOK_SHELL}{hold_unmount(config.rootfs_mount)}"
                 f"umount {config.rootfs_mount}'")
    return lines


def _disk_lines(config: ContainerConfig) -> list[str]:
    """Data disks: their host loop mounts bound in (idmapped like the root, so uid 0 on the
    disk is root inside); unmounted by a hook however the container stops."""
    lines: list[str] = []
    options = "bind,create=dir" + (",idmap=container" if config.idmap is not None else "")
    for host, inside in config.data_mounts:
        lines.append(f"lxc.mount.entry = {host} {inside.lstrip('/')} none {options} 0 0")
    for host, _inside in config.data_mounts:
        lines.append(f"lxc.hook.post-stop = {HOOK_SHELL}umount {host} || true'")
    return lines


def _net_lines(nics: tuple[NicSpec, ...]) -> list[str]:
    """veth per NIC: host end named as the network code expects, guest end ethN, addresses set
    by LXC before init runs. Bridged NICs are attached by LXC; routed ones by Corral after."""
    if not nics:
        return ["lxc.net.0.type = empty"]
    lines: list[str] = []
    for n, nic in enumerate(sorted(nics, key=lambda x: x.index)):
        key = f"lxc.net.{n}"
        lines += [f"{key}.type = veth", f"{key}.veth.pair = {nic.host_ifname}",
                  f"{key}.name = {nic.guest_ifname}", f"{key}.hwaddr = {nic.mac}",
                  f"{key}.flags = up"]
        if nic.network.bridge is not None:
            lines.append(f"{key}.link = {nic.network.bridge}")
        for address in nic.addresses:
            family = "ipv4" if address.version == 4 else "ipv6"
            lines.append(f"{key}.{family}.address = {address}/{nic.prefix_of(address)}")
        if nic.network.type is NetworkType.ROUTED:
            if nic.ipv4:
                lines.append(f"{key}.ipv4.gateway = dev")
            if nic.ipv6:
                lines.append(f"{key}.ipv6.gateway = dev")
        elif nic.index == 0:
            for gateway in nic.network.gateways:
                family = "ipv4" if gateway.version == 4 else "ipv6"
                lines.append(f"{key}.{family}.gateway = {gateway}")
    return lines


def render_config(config: ContainerConfig) -> str:
    """The text of ``<lxcpath>/<name>/config``."""
    dirs = cgroup_dirs(config.lxc_name)
    lines = [
        "# Written by Corral; changes here are overwritten.",
        f"lxc.include = {config.include_dir / 'common.conf'}",
    ]
    if config.idmap is not None:
        uid, gid = config.idmap.uid, config.idmap.gid
        lines += [
            f"lxc.include = {config.include_dir / 'userns.conf'}",
            f"lxc.idmap = u 0 {uid.start} {uid.count}",
            f"lxc.idmap = g 0 {gid.start} {gid.count}",
            # userns.conf clears common.conf's drops (in a user namespace they are checked
            # against the initial one anyway); put them back: nothing a guest needs, and one
            # layer more should a kernel bug ever honour them
            f"lxc.cap.drop = {' '.join(USERNS_DROPS)}",
        ]
    lines += [
        f"lxc.uts.name = {config.hostname}",
        *_rootfs_lines(config),
        *_disk_lines(config),
        *_net_lines(config.nics),
        f"lxc.signal.halt = {normalise_signal(config.halt_signal)}",
        f"lxc.tty.max = {TTYS}",
        f"lxc.pty.max = {PTYS}",
        f"lxc.console.logfile = {config.console_log}",
        f"lxc.console.size = {CONSOLE_LOG_SIZE}",
        "lxc.console.rotate = 1",
        f"lxc.log.file = {config.log_file}",
        "lxc.log.level = WARN",
        "lxc.cgroup.relative = 0",
        f"lxc.cgroup.dir.container = {dirs['container']}",
        f"lxc.cgroup.dir.monitor = {dirs['monitor']}",
        f"lxc.cgroup.dir.monitor.pivot = {dirs['pivot']}",
        # Limits sit on ct/<name>; the container's cgroup namespace starts one level below,
        # so even a privileged container cannot raise them.
        f"lxc.cgroup.dir.container.inner = {INNER}",
    ]
    lines.append(RESOURCES_MARKER)
    lines += _limit_lines(config.cgroups, config.resources, config.swap_limit)
    return "\n".join(lines) + "\n"
