"""What this host's kernel and tools can do, found by looking, never assumed."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from corral.host.criu import probe as criu_probe
from corral.host.run import run

CAP_SYS_RESOURCE = 24
CAP_SYS_ADMIN = 21


@dataclass(frozen=True)
class Feature:
    available: bool
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {"available": self.available, "detail": self.detail}


def _effective_caps(status_text: str) -> int:
    match = re.search(r"^CapEff:\s*([0-9a-f]+)$", status_text, re.MULTILINE)
    return int(match.group(1), 16) if match else 0


def capability(bit: int, name: str) -> Feature:
    caps = _effective_caps(Path("/proc/self/status").read_text())
    has = bool(caps & (1 << bit))
    return Feature(has, f"{name} {'held' if has else 'not held by this process'}")


def _filesystems() -> set[str]:
    try:
        text = Path("/proc/filesystems").read_text()
    except OSError:
        return set()
    return {line.split()[-1] for line in text.splitlines() if line.strip()}


def filesystem(name: str) -> Feature:
    has = name in _filesystems()
    return Feature(has, f"{name} {'in' if has else 'not in'} /proc/filesystems")


def path_feature(path: str, what: str) -> Feature:
    has = os.path.exists(path)
    return Feature(has, f"{what}: {path} {'present' if has else 'missing'}")


def kernel_module(name: str, what: str) -> Feature:
    """Built in or loaded (this host may be unable to load modules at all)."""
    has = Path(f"/sys/module/{name}").exists()
    return Feature(has, f"{what}: kernel module {name} {'present' if has else 'not loaded'}")


def tool_version(argv: list[str], pattern: str) -> Feature:
    if shutil.which(argv[0]) is None:
        return Feature(False, f"{argv[0]} not installed")
    proc = run(argv, check=False, timeout=10)
    text = (proc.stdout + proc.stderr).decode(errors="replace")
    match = re.search(pattern, text)
    return Feature(proc.returncode == 0, match.group(1) if match else text.strip()[:80])


def criu() -> Feature:
    """CRIU's version and ``criu check``'s verdict (``host.criu``: the one Corral uses)."""
    status = criu_probe()
    return Feature(status.works, status.reason)


def user_namespaces() -> Feature:
    try:
        limit = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    except (OSError, ValueError):
        return Feature(False, "/proc/sys/user/max_user_namespaces unreadable")
    return Feature(limit > 0, f"max_user_namespaces={limit}")


def probe_all() -> dict[str, Feature]:
    """Cheap probes only (no guest boots): safe to run at every daemon start."""
    return {
        "lxc": tool_version(["lxc-start", "--version"], r"(\d+\.\d+\.\d+)"),
        "qemu": tool_version(["qemu-system-x86_64", "--version"], r"version (\S+)"),
        "kvm_device": path_feature("/dev/kvm", "KVM"),
        "user_namespaces": user_namespaces(),
        "criu": criu(),
        "vhost_net": path_feature("/dev/vhost-net", "vhost-net"),
        "vlan_8021q": kernel_module("8021q", "802.1Q VLAN"),
        "nbd": path_feature("/sys/module/nbd", "NBD"),
        "device_mapper": path_feature("/dev/mapper/control", "device-mapper"),
        "loop": path_feature("/dev/loop-control", "loop devices"),
        "btrfs": filesystem("btrfs"),
        "overlayfs": filesystem("overlay"),
        "cap_sys_resource": capability(CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE (online resize2fs)"),
    }
