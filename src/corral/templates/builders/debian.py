"""The ``debian-12`` template (Debian bookworm, systemd) and appliances built on it.

* The root filesystem: ``debootstrap --variant=minbase bookworm`` plus ``systemd-sysv`` (the
  init: the same one real Debian hosts run; LXC measured "running" in ~190 ms) and
  ``iproute2`` (the NIC tool), cached under ``<templates>/.cache/`` keyed by suite, mirror and
  package list, so a rebuild (or an appliance) does not download it again.
* Corral's additions: ``corral-boot.service`` (hostname and NICs of a VM from the kernel
  command line — the ``corral.net<i>=`` words the tiny guest's rcS reads — through the tiny
  guest's own ``corral-net``, then ``corral-guest-ready`` on the console), and
  ``corral-agent.service``: the tiny guest's agent protocol in POSIX sh + coreutils. Root has
  no password (console login); systemd runs a getty on ttyS0 (VM, from ``console=ttyS0``)
  and on the container console by itself.
* Kernel and initramfs: the host's, made by the tiny builder's code (``vmlinux`` +
  an initramfs that loads virtio/ext4 modules and ``switch_root``s to ``/sbin/init``).
* Appliances (``APPLIANCES``) run a provisioning script in a chroot of a copy of the cached
  tree at build time (``apt-get install``, files) and ship it as ``provision.sh``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from corral.domain.errors import HostFailure
from corral.host.run import require_tool, run
from corral.templates.artifact import sha256_file
from corral.templates.builders.tiny import AGENT_PORT, READY_MARKER, build_tiny, guest_file
from corral.templates.image import METADATA, ROOTFS, TemplateImage

ProgressFn = Callable[[float, str], None]
SUITE = "bookworm"
MIRROR = os.environ.get("CORRAL_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ("systemd-sysv", "iproute2")
CMDLINE = f"console=ttyS0 root=/dev/vda rw quiet panic=-1 corral.agent={AGENT_PORT}"
HALT_SIGNAL = "SIGRTMIN+3"  # systemd's "halt" signal for a container's init
# Units of a stock Debian that cannot work in an unprivileged container: left in, systemd
# reports a fresh container "degraded". In a VM they run as on any Debian.
CONTAINER_SKIPS = {
    # debugfs and tracefs: the user namespace may not mount them (host kernel internals)
    "sys-kernel-debug.mount": "ConditionVirtualization=!container",
    "sys-kernel-tracing.mount": "ConditionVirtualization=!container",
}


@dataclass(frozen=True)
class Appliance:
    name: str
    description: str
    packages: tuple[str, ...]
    files: dict[str, str]
    enable: tuple[str, ...] = ()
    disk: int = 1024**3


APPLIANCES: dict[str, Appliance] = {
    "debian-12-nginx": Appliance(
        name="debian-12-nginx",
        description="Debian 12 with nginx serving /var/www/html",
        packages=("nginx",),
        files={"/var/www/html/index.html":
               "<!doctype html><title>Corral</title><h1>Hello from Corral nginx</h1>\n"},
        enable=("nginx.service",),
    ),
}


def _debian_file(name: str) -> str:
    return (resources.files("corral.templates") / "guest" / "debian" / name).read_text()


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def render_provision(appliance: Appliance) -> str:
    """The provisioning script run in a chroot of the root filesystem at build time."""
    lines = [
        "#!/bin/sh",
        f"# Provisioning of the {appliance.name} appliance (run by Corral at build time in a",
        "# chroot of the debian-12 root filesystem; kept in the template as provision.sh).",
        "set -eu",
        "export DEBIAN_FRONTEND=noninteractive LC_ALL=C",
        "apt-get update",
        "apt-get install -y --no-install-recommends " + " ".join(appliance.packages),
    ]
    for path, content in sorted(appliance.files.items()):
        lines += [f"mkdir -p {_shell_quote(str(Path(path).parent))}",
                  f"printf '%s' {_shell_quote(content)} > {_shell_quote(path)}"]
    lines += [f"systemctl enable {unit}" for unit in appliance.enable]
    lines += ["apt-get clean", "rm -rf /var/lib/apt/lists/*", ""]
    return "\n".join(lines)


def cache_key(suite: str, mirror: str, packages: tuple[str, ...]) -> str:
    text = json.dumps([suite, mirror, sorted(packages), _debian_file("corral-agent"),
                       CONTAINER_SKIPS])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def metadata(name: str, description: str, version: str, kernel: dict[str, Any],
             files: dict[str, str], disk: int) -> dict[str, Any]:
    return {
        "name": name, "version": version, "os": "debian-12", "arch": "x86_64",
        "description": description, "kernel": kernel,
        "resources": {"cpus": 1, "memory": 512 * 1024**2, "disk": disk},
        "files": files,
        "ct": {"halt_signal": HALT_SIGNAL, "init": "/sbin/init"},
        "vm": {"cmdline": CMDLINE, "machine": "microvm", "agent": AGENT_PORT,
               "ready_marker": READY_MARKER},
    }


def _cache_dir(out_dir: Path) -> Path:
    """Beside the template store (``out_dir`` is a staging directory in it)."""
    found = Path(os.environ.get("CORRAL_BUILD_CACHE", out_dir.parent / ".cache"))
    found.mkdir(parents=True, exist_ok=True)
    return found


def debootstrap_tree(cache: Path, progress: ProgressFn) -> Path:
    """The cached bootstrapped tree (made once: ~25 s and ~210 MB from the mirror)."""
    key = cache_key(SUITE, MIRROR, PACKAGES)
    tree = cache / f"debian-{SUITE}-{key}"
    if (tree / ".corral-complete").is_file():
        progress(0.4, "debootstrap: cached")
        return tree
    debootstrap = require_tool("debootstrap", "debootstrap")
    partial = Path(tempfile.mkdtemp(prefix=f".debootstrap-{SUITE}-", dir=cache))
    try:
        progress(0.02, f"debootstrap {SUITE} from {MIRROR} (once; ~25 s)")
        # in its own mount namespace: the /proc etc. it mounts in the target die with it,
        # whatever happens (a failed debootstrap must not leave mounts under the cache)
        proc = run(["unshare", "-m", "--propagation", "private", debootstrap,
                    "--variant=minbase", f"--include={','.join(PACKAGES)}",
                    SUITE, str(partial), MIRROR], check=False, timeout=1800)
        if proc.returncode != 0:
            said = (proc.stderr or proc.stdout).decode(errors="replace").strip()[-2000:]
            raise HostFailure(f"debootstrap {SUITE} failed: {said}")
        _customise(partial)
        (partial / ".corral-complete").write_text(key + "\n")
        shutil.rmtree(tree, ignore_errors=True)
        partial.rename(tree)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    progress(0.4, "debootstrap done")
    return tree


def _write(root: Path, path: str, text: str, mode: int = 0o644) -> None:
    dest = root / path.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    dest.chmod(mode)


def _customise(root: Path) -> None:
    net = guest_file("corral-net").decode().replace("usleep 100000", "sleep 0.1")
    _write(root, "/usr/local/sbin/corral-net", net, 0o755)
    _write(root, "/usr/local/sbin/corral-agent", _debian_file("corral-agent"), 0o755)
    _write(root, "/usr/local/sbin/corral-boot", _debian_file("corral-boot"), 0o755)
    for unit in ("corral-agent.service", "corral-boot.service"):
        _write(root, f"/etc/systemd/system/{unit}", _debian_file(unit))
    wants = {"corral-agent.service": "multi-user.target.wants",
             "corral-boot.service": "sysinit.target.wants"}
    for unit, target in wants.items():
        link = root / "etc/systemd/system" / target / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(f"/etc/systemd/system/{unit}")
    for unit, condition in CONTAINER_SKIPS.items():
        _write(root, f"/etc/systemd/system/{unit}.d/corral-container.conf",
               f"# Corral: not in a container (see corral.templates.builders.debian)\n"
               f"[Unit]\n{condition}\n")
    _write(root, "/etc/hostname", "debian\n")
    _write(root, "/etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n")
    _write(root, "/etc/fstab", "# the root is mounted by the initramfs (VM) or LXC (CT)\n")
    shadow = (root / "etc/shadow").read_text().splitlines()
    (root / "etc/shadow").write_text("".join(
        ("root::" + line.split(":", 2)[2] if line.startswith("root:") else line) + "\n"
        for line in shadow))
    # no udev-less waits for devices that never come, no machine-id shared by every guest
    (root / "etc/machine-id").write_text("")
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


# The tree is the script's argument ("$1"), never part of its text: any path is safe.
_CHROOT_SCRIPT = """set -e
mount -t proc proc "$1/proc"
mount --rbind /sys "$1/sys"
mount --rbind /dev "$1/dev"
exec chroot "$1" /bin/sh /tmp/corral-provision.sh
"""


def _chroot_provision(tree: Path, script: str) -> None:
    """Run ``script`` in a chroot of ``tree`` with /proc, /sys, /dev bound and the host's
    resolv.conf (unshare -m: every mount dies with the process, none can leak)."""
    _write(tree, "/tmp/corral-provision.sh", script, 0o755)
    resolv = tree / "etc/resolv.conf"
    saved = resolv.read_bytes() if resolv.is_file() else None
    shutil.copyfile("/etc/resolv.conf", resolv)
    try:
        proc = run(["unshare", "-m", "--propagation", "private", "sh", "-c", _CHROOT_SCRIPT,
                    "corral-provision", str(tree)], check=False, timeout=1800)
        if proc.returncode != 0:
            said = (proc.stderr or proc.stdout).decode(errors="replace").strip()[-2000:]
            raise HostFailure(f"provisioning failed (exit {proc.returncode}): {said}")
    finally:
        (tree / "tmp/corral-provision.sh").unlink(missing_ok=True)
        if saved is not None:
            resolv.write_bytes(saved)
        else:
            resolv.unlink(missing_ok=True)


def _pack(tree: Path, dest: Path) -> None:
    tar = require_tool("tar", "tar")
    proc = run([tar, "--numeric-owner", "--xattrs", "--exclude=./.corral-complete",
                "-C", str(tree), "-czf", str(dest), "."], check=False, timeout=1800)
    if proc.returncode != 0:
        raise HostFailure(f"packing the root filesystem failed: {proc.stderr.decode()[-500:]}")


def _build(out_dir: Path, progress: ProgressFn | None, appliance: Appliance | None
           ) -> TemplateImage:
    def report(fraction: float, phase: str) -> None:
        if progress is not None:
            progress(fraction, phase)

    out_dir.mkdir(parents=True, exist_ok=True)
    cache = _cache_dir(out_dir)
    tree = debootstrap_tree(cache, report)
    provision = render_provision(appliance) if appliance is not None else None
    with tempfile.TemporaryDirectory(prefix=".work-", dir=cache) as work:
        root = tree
        if provision is not None:
            report(0.45, f"provisioning {appliance.name if appliance else ''} in a chroot")
            root = Path(work) / "root"
            run(["cp", "-a", "--reflink=auto", str(tree), str(root)], timeout=600)
            _chroot_provision(root, provision)
        report(0.6, "packing the root filesystem")
        _pack(root, out_dir / ROOTFS)
    report(0.8, "kernel and initramfs (the host's, as for tiny)")
    with tempfile.TemporaryDirectory(prefix=".kernel-", dir=cache) as kdir:
        tiny = build_tiny(Path(kdir))
        for name in ("vmlinux", "initrd.img"):
            shutil.copyfile(tiny.directory / name, out_dir / name)
        kernel = dict(tiny.metadata["kernel"])
    names = [ROOTFS, "vmlinux", "initrd.img"]
    if provision is not None:
        (out_dir / "provision.sh").write_text(provision)
        names.append("provision.sh")
    files = {name: sha256_file(out_dir / name) for name in names}
    name = appliance.name if appliance else "debian-12"
    description = appliance.description if appliance else "Debian 12 (bookworm), systemd"
    meta = metadata(name, description, "1", kernel, files,
                    appliance.disk if appliance else 1024**3)
    (out_dir / METADATA).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    report(1.0, "done")
    return TemplateImage.load(out_dir)



def build_debian(out_dir: Path, progress: ProgressFn | None = None) -> TemplateImage:
    return _build(out_dir, progress, None)


def build_debian_nginx(out_dir: Path, progress: ProgressFn | None = None) -> TemplateImage:
    return _build(out_dir, progress, APPLIANCES["debian-12-nginx"])
