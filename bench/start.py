"""Start latency: Corral vs the raw tool, interleaved in one run, printed as a table.

* CT: `corral start` (through corrald's API and an Operation) vs raw `mount` + `lxc-start -d`
  (which returns once the container is RUNNING) of the same LXC config on the same root
  disk image (Corral's container is stopped meanwhile).
* VM: `corral start` vs the identical `qemu-system-x86_64` command line (from the same pure
  builder) on the same disk image. Two columns: until the runtime is up (QEMU daemonized,
  what `corral start` waits for) and until the guest prints its ready marker.

Columns: p50/p90 of each side, the ratio of the p50s, of the means, the median of the
ratios of each interleaved pair (the two sides of a pair ran back to back, so the host's
slow drifts -- large on this shared 2-vCPU machine -- cancel out in it), and that median's
95 % bootstrap interval.

Run as root: .venv/bin/python bench/start.py [--runs 20] [--kinds ct,vm] [--samples FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corral.client import CorralClient
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.drivers.qemu.cmdline import VmPaths, build_argv
from corral.drivers.qemu.driver import QemuDriver
from corral.templates.builders.tiny import build_tiny
from corral.templates.image import TemplateImage
from corral.wire.models import CreateRequest, StopRequest
from tests.integration.conftest import Daemon, start_daemon, stop_daemon

READY = b"corral-guest-ready"
Timer = Callable[[], float]


def _wait_file_contains(path: Path, needle: bytes, start: float, timeout: float = 60) -> float:
    while time.monotonic() - start < timeout:
        try:
            if needle in path.read_bytes():
                return time.monotonic() - start
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{needle!r} never appeared in {path}")


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


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
        subprocess.run([tool, "-n", self.name, "-P", str(self.lxcpath), *args], check=True,
                       capture_output=True)

    def start(self) -> float:
        started = time.monotonic()
        subprocess.run(["mount", "-t", "ext4", "-o", "loop,nodev", str(self.image),
                        str(self.rootfs)], check=True, capture_output=True)
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


def _row(label: str, corral: list[float], raw: list[float]) -> list[str]:
    c50, c90 = _percentile(corral, 50), _percentile(corral, 90)
    r50, r90 = _percentile(raw, 50), _percentile(raw, 90)
    mean_ratio = statistics.mean(corral) / statistics.mean(raw)
    # run i of each side ran back to back (interleaved): the median of those pairs' ratios
    # cancels the host's slow drifts, which move both sides of a pair alike
    ratios = [c / r for c, r in zip(corral, raw, strict=True)]
    paired = statistics.median(ratios)
    low, high = _bootstrap_ci(ratios)
    return [label, f"{r50 * 1000:.0f}", f"{r90 * 1000:.0f}", f"{c50 * 1000:.0f}",
            f"{c90 * 1000:.0f}", f"{c50 / r50:.2f}x", f"{mean_ratio:.2f}x", f"{paired:.2f}x",
            f"{low:.2f}-{high:.2f}x"]


def _bootstrap_ci(ratios: list[float], rounds: int = 2000) -> tuple[float, float]:
    """95 % interval of the paired median (percentile bootstrap, fixed seed): how far this
    run's paired p50 can be trusted. On this host QEMU's own start is bimodal (transparent
    huge pages the hypervisor took back or not: docs/perf-log.md), and the interval of
    30 runs is often ±0.1x wide."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios)))
                     for _ in range(rounds))
    return medians[int(rounds * 0.025)], medians[int(rounds * 0.975) - 1]


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
    results: dict[str, tuple[list[float], list[float]]] = {
        k: ([], []) for k in ("CT start (running)", "VM start (runtime up)",
                              "VM start (guest ready)")}
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
            vm_log = daemon.state_dir / "instances" / str(vm.id) / "console.log"
            for i in range(args.runs):
                order = (0, 1) if i % 2 == 0 else (1, 0)  # interleave, alternate who goes first
                for which in order:
                    if which == 0:
                        if "ct" in kinds:
                            results["CT start (running)"][0].append(_corral_start(c, "bench-ct"))
                            _corral_stop(c, "bench-ct")
                        if "vm" not in kinds:
                            continue
                        vm_log.unlink(missing_ok=True)
                        started = time.monotonic()
                        up = _corral_start(c, "bench-vm")
                        ready = _wait_file_contains(vm_log, READY, started)
                        results["VM start (runtime up)"][0].append(up)
                        results["VM start (guest ready)"][0].append(ready)
                        _corral_stop(c, "bench-vm")
                    else:
                        if "ct" in kinds:
                            results["CT start (running)"][1].append(raw_ct.start())
                            raw_ct.stop()
                        if "vm" not in kinds:
                            continue
                        up, ready = raw_vm.start()
                        results["VM start (runtime up)"][1].append(up)
                        results["VM start (guest ready)"][1].append(ready)
                        raw_vm.stop()
            for name in ("bench-ct", "bench-vm"):
                c.wait(c.delete_instance(name, force=True).id)
    finally:
        stop_daemon(daemon)
        shutil.rmtree(root, ignore_errors=True)
    if args.samples:
        args.samples.write_text(json.dumps({k: {"corral": v[0], "raw": v[1]}
                                            for k, v in results.items()}, indent=1))
    header = ["what", "raw p50 ms", "raw p90 ms", "corral p50 ms", "corral p90 ms",
              "ratio p50", "ratio mean", "paired p50", "paired 95% CI"]
    rows = [_row(k, v[0], v[1]) for k, v in results.items() if v[0]]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"runs: {args.runs} each, interleaved")
    for r in [header, *rows]:
        print(" | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()
