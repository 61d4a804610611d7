"""Start latency: Corral vs the raw tools doing the same start, paired rounds, as a table.

* CT: `corral start` (through corrald's API and an Operation) vs the same LXC config on the
  same root disk image started by hand (Corral's container is stopped meanwhile): the image
  mounted the way Corral mounts it (``LOOP_CONFIGURE`` + ``mount(2)`` nodev, the same
  syscalls through ``corral.host.loopmount`` called from this script: the fastest a person
  could script) and ``lxc-start -d`` (which returns once the container is RUNNING). Extra
  row, labelled: the old raw side, ``mount -o loop`` (the tool's probing and its own search
  for a device) + ``lxc-start -d``.
* VM: `corral start` vs the identical `qemu-system-x86_64` command line (from the same pure
  builder) on the same disk image. Two rows: until the runtime is up (QEMU daemonized,
  what `corral start` waits for) and until the guest prints its ready marker.

A warm-up round of both sides is discarded, then the rounds alternate which side goes
first; each table row shows both sides' medians and spread, the ratio of the medians and
the paired ratio (median of each round's ratio, with its 95 % bootstrap interval: on this
host QEMU's own start is bimodal (docs/perf-log.md), and the interval of 30 runs is often
+-0.1x wide). bench/common.py has the statistics.

Run as root: .venv/bin/python bench/start.py [--runs 20] [--kinds ct,vm] [--samples FILE]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Samples, Table, accelerator, conditions, paired_rounds, write_samples

from corral.client import CorralClient
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.drivers.lxc.startenv import start_env
from corral.drivers.qemu.cmdline import VmPaths, build_argv
from corral.drivers.qemu.driver import QemuDriver
from corral.host.loopmount import MS_NODEV, mount_loop
from corral.templates.builders.tiny import build_tiny
from corral.templates.image import TemplateImage
from corral.wire.models import CreateRequest, StopRequest
from tests.integration.conftest import Daemon, remove_nft_tables, start_daemon, stop_daemon

READY = b"corral-guest-ready"


def _wait_file_contains(path: Path, needle: bytes, start: float, timeout: float = 60) -> float:
    while time.monotonic() - start < timeout:
        try:
            if needle in path.read_bytes():
                return time.monotonic() - start
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{needle!r} never appeared in {path}")


def _corral_start(c: CorralClient, name: str) -> float:
    """As `corral start` does it: one request, answered when the operation ended."""
    started = time.monotonic()
    op = c.action(name, "start", wait=60)
    took = time.monotonic() - started
    if op.status != "success":
        raise RuntimeError(f"start {name}: {op.error}")
    return took


def _corral_stop(c: CorralClient, name: str) -> None:
    c.wait(c.action(name, "stop", StopRequest(force=True, timeout=0)).id)


def _root_disk(c: CorralClient, name: str) -> Path:
    return Path(next(d.path for d in c.list_disks(name) if d.root))


class RawContainer:
    """The same LXC config as Corral's container, on its very disk image, under another name.

    Corral mounts the (unshifted) image on the host and LXC idmaps it (``dir:`` rootfs), so
    the raw start mounts the copy the same way before ``lxc-start``; the config's post-stop
    hook unmounts it, as it does for Corral.
    """

    def __init__(self, daemon: Daemon, c: CorralClient, name: str, instance_id: int,
                 root: Path) -> None:
        self.lxcpath = root / "lxc"
        self.name = f"raw{instance_id}"
        corral_dir = daemon.state_dir / "instances" / str(instance_id)
        raw_dir = root / "instance"
        raw_dir.mkdir(parents=True)
        # the very image Corral starts (Corral's container is stopped while this one runs):
        # the same file system on the same pool, not a copy elsewhere
        self.image = _root_disk(c, name)
        self.rootfs = raw_dir / "run" / "rootfs"
        self.rootfs.mkdir(parents=True)
        config = (daemon.state_dir / "lxc" / str(instance_id) / "config").read_text()
        config = config.replace(str(corral_dir), str(raw_dir))
        config = re.sub(rf"(lxc\.cgroup\.dir\.\S+ = \S+/\w+/){instance_id}\b",
                        rf"\g<1>{self.name}", config)
        (self.lxcpath / self.name).mkdir(parents=True)
        (self.lxcpath / self.name / "config").write_text(config)

    def _lxc(self, tool: str, *args: str) -> None:
        # lxc-start in the environment Corral gives it (ids mapped without the shadow tools)
        env = start_env() if tool == "lxc-start" else None
        subprocess.run([shutil.which(tool) or tool, "-n", self.name, "-P", str(self.lxcpath),
                        *args], check=True, capture_output=True, env=env)

    def start(self, tool: bool = False) -> float:
        """Mount as Corral does (``tool``: with ``mount -o loop``), then ``lxc-start -d``."""
        started = time.monotonic()
        if tool:
            subprocess.run(["mount", "-t", "ext4", "-o", "loop,nodev", str(self.image),
                            str(self.rootfs)], check=True, capture_output=True)
        else:
            mount_loop(self.image, self.rootfs, "ext4", MS_NODEV)
        self._lxc("lxc-start", "-d")  # returns once the container is RUNNING (liblxc)
        return time.monotonic() - started

    def stop(self) -> None:
        self._lxc("lxc-stop", "-k")
        if os.path.ismount(self.rootfs):  # the post-stop hook normally did it
            subprocess.run(["umount", str(self.rootfs)], check=True)


class RawVm:
    """The identical QEMU command line as Corral's VM, on its very disk image."""

    def __init__(self, daemon: Daemon, c: CorralClient, instance_id: int,
                 template: TemplateImage, root: Path, resources: Resources, name: str) -> None:
        corral_dir = daemon.state_dir / "instances" / str(instance_id)
        disk = _root_disk(c, name)
        spec = InstanceSpec(id=instance_id, name=name, kind=Kind.VM, template="tiny",
                            resources=resources, directory=corral_dir, root_disk=disk)
        cfg = QemuDriver().config(spec, template)
        raw_dir = root / "vm"
        (raw_dir / "run").mkdir(parents=True)
        self.paths = VmPaths(directory=raw_dir, run=raw_dir / "run")
        from dataclasses import replace

        # the very disk Corral boots (its VM is stopped while this one runs)
        self.cfg = replace(cfg, disk=disk, paths=self.paths)
        self.argv = build_argv(shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
                               self.cfg)

    def start(self) -> tuple[float, float]:
        self.paths.console_log.unlink(missing_ok=True)
        started = time.monotonic()
        subprocess.run(self.argv, check=True, capture_output=True)
        up = time.monotonic() - started
        ready = _wait_file_contains(self.paths.console_log, READY, started)
        return up, ready

    def stop(self) -> None:
        pid = int(self.paths.pidfile.read_text())
        os.kill(pid, signal.SIGKILL)
        while Path(f"/proc/{pid}").exists():
            time.sleep(0.01)
        for sock in self.paths.sockets():
            sock.unlink(missing_ok=True)
        self.paths.pidfile.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--kinds", default="ct,vm",
                        help="which starts to time: ct, vm or both (default: ct,vm)")
    parser.add_argument("--samples", type=Path, metavar="FILE",
                        help="also write every run's times (seconds, in run order) as JSON")
    args = parser.parse_args()
    kinds = {k.strip() for k in args.kinds.split(",") if k.strip()}
    if not kinds or kinds - {"ct", "vm"}:
        sys.exit(f"--kinds: ct, vm or both, not {args.kinds!r}")
    if os.geteuid() != 0:
        sys.exit("run as root")
    root = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    root.chmod(0o711)
    state = root / "state"
    state.mkdir()
    template = build_tiny(state / "templates" / "tiny")
    daemon = start_daemon(state, drivers="real")
    accel = "n/a"
    try:
        with daemon.client() as c:
            for name, kind in (("bench-ct", "ct"), ("bench-vm", "vm")):
                op = c.create_instance(CreateRequest(name=name, type=kind, template="tiny",
                                                     memory="160M", disk="64M"))
                if c.wait(op.id).status != "success":
                    raise RuntimeError(f"create {name} failed")
            ct = c.get_instance("bench-ct")
            vm = c.get_instance("bench-vm")
            raw_ct = RawContainer(daemon, c, ct.name, ct.id, root / "raw-ct")
            vm_res = Resources(cpus=vm.resources.cpus, memory=vm.resources.memory,
                               disk=vm.resources.disk)
            raw_vm = RawVm(daemon, c, vm.id, template, root / "raw-vm", vm_res, vm.name)
            accel = accelerator(raw_vm.argv)
            vm_log = daemon.state_dir / "instances" / str(vm.id) / "console.log"

            def corral() -> dict[str, float]:
                got = {}
                if "ct" in kinds:
                    got["ct"] = _corral_start(c, "bench-ct")
                    _corral_stop(c, "bench-ct")
                if "vm" in kinds:
                    vm_log.unlink(missing_ok=True)
                    started = time.monotonic()
                    got["vm_up"] = _corral_start(c, "bench-vm")
                    got["vm_ready"] = _wait_file_contains(vm_log, READY, started)
                    _corral_stop(c, "bench-vm")
                return got

            def raw() -> dict[str, float]:
                got = {}
                if "ct" in kinds:
                    got["ct"] = raw_ct.start()
                    raw_ct.stop()
                    got["ct_tool"] = raw_ct.start(tool=True)
                    raw_ct.stop()
                if "vm" in kinds:
                    got["vm_up"], got["vm_ready"] = raw_vm.start()
                    raw_vm.stop()
                return got

            samples = paired_rounds(args.runs, corral, raw, Samples())
            for name in ("bench-ct", "bench-vm"):
                c.wait(c.delete_instance(name, force=True).id)
    finally:
        stop_daemon(daemon)
        remove_nft_tables(state)  # its guests are gone: so go its tables
        shutil.rmtree(root, ignore_errors=True)
    write_samples(args.samples, {"start": samples})
    table = Table("start latency (ms; ratio = Corral / raw, > 1: Corral slower)")
    rows = [("ct", "ct", "CT start (running) vs LOOP_CONFIGURE + mount(2) + lxc-start -d"),
            ("ct", "ct_tool", "  extra (old raw side): vs mount -o loop + lxc-start -d"),
            ("vm_up", "vm_up", "VM start (runtime up) vs the same qemu-system-x86_64"),
            ("vm_ready", "vm_ready", "VM start (guest ready) vs the same qemu-system-x86_64")]
    for mine, theirs, what in rows:
        if mine in samples.corral:
            table.add(what, samples.corral[mine], samples.raw[theirs])
    print()
    print(conditions(args.runs, accel))
    print(table.render())


if __name__ == "__main__":
    main()
