"""One tiny VM's create + start to "runtime up", by part, through Corral's own driver code
(in this process, no corrald, no database): where a VM's start time goes.

"Runtime up" is what ``corral start`` waits for: ``QemuDriver.start`` returns once QEMU's
launcher has exited, which QEMU (``-daemonize``) does after its monitor listens and its
vCPUs were started. Parts, per run (wall ms; the QEMU launcher's CPU too):

* clone: the root disk cloned from the template's base image (``clone_file``: FICLONE or a
  sparse copy, as a storage pool does);
* config: ``QemuDriver.config`` + ``build_argv`` (kernel command line, accelerator, sizes);
* cgroup: the VM's group made with its limits and its live file (``resources.launching``;
  runs while QEMU initialises, off the critical path, but timed apart here too);
* qemu exec -> up: from the exec to the launcher's exit (Corral moves it into the group
  meanwhile);
* started: after up (the group's weight again under a launch priority, IO throttling);
* QMP: connect and read the greeting + ``qmp_capabilities`` + ``query-status`` (what a
  ``status`` costs at once after); Corral's start itself does no QMP round trip.

The in-process ``start`` is timed whole too, alternating with the split one.

Run as root: .venv/bin/python bench/vm_start_parts.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.drivers.qemu import resources as vm_resources
from corral.drivers.qemu.cmdline import build_argv
from corral.drivers.qemu.driver import QemuDriver, _paths
from corral.drivers.qemu.qmp import qmp
from corral.host.cgroups import host_layout
from corral.storage.images import build_root_disk
from corral.storage.pools.copy import clone_file
from corral.templates.builders.tiny import build_tiny


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    os.environ.setdefault("CORRAL_CGROUP_ROOT", f"corral-bench-parts-{os.getpid()}")
    root = Path(tempfile.mkdtemp(prefix="corral-bench-parts-"))
    parts: dict[str, list[float]] = {}
    driver = QemuDriver()
    layout = host_layout()
    spec: InstanceSpec | None = None

    def note(name: str, began: float) -> float:
        now = time.monotonic()
        parts.setdefault(name, []).append(1000 * (now - began))
        return now

    try:
        template = build_tiny(root / "tiny")
        base = root / "base.img"
        build_root_disk(template.rootfs, base, 64 << 20)
        for run in range(2 * args.runs):
            vm_dir = root / f"vm{run}"
            vm_dir.mkdir()
            spec = InstanceSpec(id=900 + run, name=f"parts{run}", kind=Kind.VM,
                                template="tiny",
                                resources=Resources(cpus=1, memory=128 << 20, disk=64 << 20),
                                directory=vm_dir, root_disk=vm_dir / "root.img")
            t = time.monotonic()
            clone_file(base, vm_dir / "root.img")
            t = note("clone", t)
            paths = _paths(spec)
            if run % 2:  # Corral's start, whole
                driver.start(spec, template)
                t = note("QemuDriver.start, whole", t)
            else:
                argv = build_argv(driver._binary(), driver.config(spec, template))
                t = note("config + argv", t)
                paths.run.mkdir(parents=True, exist_ok=True)
                vm_resources.launching(spec, paths, layout)
                t = note("cgroup + live file", t)
                pid = os.posix_spawn(argv[0], argv, os.environ)
                _, _, usage = os.wait4(pid, 0)
                t = note("qemu exec -> up (launcher exit)", t)
                parts.setdefault("  launcher CPU", []).append(
                    1000 * (usage.ru_utime + usage.ru_stime))
                daemon = int(paths.pidfile.read_text())
                vm_resources.move(spec, layout, daemon)
                t = note("move into the group (raw: after up)", t)
            qmp(paths.qmp, "query-status", timeout=10)
            note("QMP greeting + handshake + query-status", t)
            driver.stop(spec, force=True, timeout=0)
            driver.delete(spec)
            spec = None
    finally:
        if spec is not None:
            try:
                driver.stop(spec, force=True, timeout=0)
                driver.delete(spec)
            except Exception as exc:  # cleanup goes on
                print(f"cleanup: {exc}", file=sys.stderr)
        for hierarchy in {*layout.v1.values(), layout.v2_mount}:
            if hierarchy is not None:
                group = hierarchy / os.environ["CORRAL_CGROUP_ROOT"]
                for sub in sorted(group.glob("**/"), key=lambda p: -len(p.parts)):
                    sub.rmdir()
        shutil.rmtree(root, ignore_errors=True)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"conditions: {os.cpu_count()} CPUs; load {load}; {args.runs} runs of each way; "
          f"medians; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for name, got in parts.items():
        print(f"{name:<45} | {statistics.median(got):8.1f} ms | max {max(got):8.1f} ms")


if __name__ == "__main__":
    main()
