"""Tiny TCG guests booting at once under CPU contention: how many never reach their ready
marker (stuck), launched the way Corral launches them (``QemuDriver.start``: the VM's
cgroup, the launch priority) or as the same QEMU command line run raw, side by side.

A stuck guest is shown with its last console line and, through QMP (no daemon holds the
session here), its vCPU state and local APIC timer: a guest halted with interrupts on and
its APIC timer left masked in periodic mode with the calibration's count (0x0fffffff) is
one whose kernel said "APIC frequency too slow, disabling apic timer": it never wakes
again (docs/known-gaps.md, "Tiny TCG guests stuck at boot"); counted as stuck. Others not
ready within ``--wait`` are counted apart (slow: their APIC timer runs).

Run as root: .venv/bin/python bench/vm_boot_storm.py [--vms 20] [--busy 8] [--rounds 1]
[--wait 100] [--launch raw,corral] [--priority 16] [--words 'WORD …']
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corral.domain.errors import HostFailure
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.drivers.qemu.cmdline import VmPaths, build_argv
from corral.drivers.qemu.driver import QemuDriver
from corral.drivers.qemu.qmp import qmp
from corral.host import cgroupfs
from corral.host.cgroups import host_layout
from corral.storage.images import build_root_disk
from corral.storage.pools.copy import clone_file
from corral.templates.builders.tiny import READY_MARKER, build_tiny
from corral.templates.image import TemplateImage

READY = READY_MARKER.encode()
QEMU = "/usr/bin/qemu-system-x86_64"
CGROUP_ROOT = "vmhang-bench"  # this bench's own cgroup root (CORRAL_CGROUP_ROOT)
CALIBRATING = "initial_count = 268435455"  # 0xffffffff / 16: calibrate_APIC_clock's count


def with_words(template: TemplateImage, words: str) -> TemplateImage:
    """The template with ``words`` added to its kernel command line (a copy in memory)."""
    if not words:
        return template
    meta = dict(template.metadata)
    vm = dict(meta.get("vm", {}))
    vm["cmdline"] = f"{vm.get('cmdline', '')} {words}".strip()
    meta["vm"] = vm
    return dataclasses.replace(template, metadata=meta)


def spec_of(run: Path, i: int) -> InstanceSpec:
    d = run / f"vm{i}"
    return InstanceSpec(id=i + 1, name=f"storm{i}", kind=Kind.VM, template="tiny",
                        resources=Resources(cpus=1, memory=128 << 20, disk=64 << 20),
                        directory=d, root_disk=d / "root.img")


def paths_of(spec: InstanceSpec) -> VmPaths:
    return VmPaths(directory=spec.directory, run=spec.run_dir)


def launch(how: str, specs: list[InstanceSpec], template: TemplateImage, priority: int,
           parallel: int) -> None:
    driver = QemuDriver()
    driver.launch_priority = lambda: priority
    if how == "corral":
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(lambda s: driver.start(s, template), specs))
        return
    argvs = [build_argv(QEMU, driver.config(s, template)) for s in specs]
    with ThreadPoolExecutor(parallel) as pool:  # each QEMU daemonizes once it is up
        list(pool.map(lambda a: subprocess.run(a, check=True, capture_output=True), argvs))


def describe(paths: VmPaths) -> str:
    """The vCPU's halt state and the local APIC timer of a stuck guest."""
    try:
        regs = qmp(paths.qmp, "human-monitor-command", {"command-line": "info registers"})
        lapic = qmp(paths.qmp, "human-monitor-command", {"command-line": "info lapic"})
    except HostFailure as exc:
        return f"QMP: {exc}"
    wanted = [w.strip() for w in f"{regs}\n{lapic}".splitlines()
              if "HLT=" in w or w.strip().startswith(("LVTT", "Timer"))]
    return " | ".join(" ".join(w.split()) for w in wanted)


def pid_of(paths: VmPaths) -> int | None:
    try:
        return int(paths.pidfile.read_text())
    except (OSError, ValueError):
        return None


def one_round(how: str, run: Path, base: Path, template: TemplateImage,
              args: argparse.Namespace) -> tuple[int, int, float]:
    shutil.rmtree(run, ignore_errors=True)
    specs = [spec_of(run, i) for i in range(args.vms)]
    for spec in specs:
        spec.run_dir.mkdir(parents=True)
        clone_file(base, spec.disk_path)
    began = time.monotonic()
    launch(how, specs, template, args.priority, args.parallel)
    pending = {spec.id: spec for spec in specs}
    while pending and time.monotonic() - began < args.wait:
        for ident, spec in list(pending.items()):
            log = paths_of(spec).console_log
            if log.exists() and READY in log.read_bytes():
                del pending[ident]
        time.sleep(0.5)
    stuck = 0
    for spec in pending.values():
        log = paths_of(spec).console_log
        text = log.read_bytes() if log.exists() else b""
        if READY in text:  # became ready while the others were looked at
            continue
        lines = text.strip().splitlines()
        last = lines[-1].decode(errors="replace")[:100] if lines else ""
        state = describe(paths_of(spec))
        dead = "HLT=1" in state and CALIBRATING in state
        stuck += dead
        print(f"  {spec.name} {'STUCK (APIC timer disabled)' if dead else 'slow'}; "
              f"last: {last}\n    {state}")
    for spec in specs:
        pid = pid_of(paths_of(spec))
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return stuck, len(pending), time.monotonic() - began


def remove_groups() -> None:
    layout = host_layout()
    for rel in (f"{CGROUP_ROOT}/vm", CGROUP_ROOT):
        try:
            cgroupfs.remove_empty_tree(layout, rel)
        except HostFailure as exc:
            print(f"cgroup {rel}: {exc}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=20)
    parser.add_argument("--busy", type=int, default=8, help="busy loops beside the guests")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--wait", type=float, default=100.0,
                        help="seconds for every guest to say it is ready")
    parser.add_argument("--parallel", type=int, default=8, help="launches at a time")
    parser.add_argument("--launch", default="raw,corral",
                        help="raw (the command line alone), corral (QemuDriver.start), or both")
    parser.add_argument("--priority", type=int, default=16, help="the launch priority")
    parser.add_argument("--words", default="", help="added to the guests' kernel command line")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    os.environ[cgroupfs.ROOT_ENV] = CGROUP_ROOT
    root = Path(tempfile.mkdtemp(prefix="corral-bench-storm-"))
    busy: list[subprocess.Popen[bytes]] = []
    try:
        template = with_words(build_tiny(root / "tiny"), args.words)
        base = root / "base.img"
        build_root_disk(template.rootfs, base, 64 << 20)
        busy = [subprocess.Popen(["sh", "-c", "while :; do :; done"])
                for _ in range(args.busy)]
        for r in range(args.rounds):
            for how in args.launch.split(","):
                stuck, late, took = one_round(how, root / "run", base, template, args)
                load = os.getloadavg()[0]
                print(f"round {r} {how:<6}: stuck {stuck}/{args.vms}, not ready in time "
                      f"{late}/{args.vms} (waited {took:.0f} s; "
                      f"load {load:.1f}; priority {args.priority}; words {args.words!r})",
                      flush=True)
    finally:
        for b in busy:
            b.kill()
            b.wait()
        time.sleep(1)
        remove_groups()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
