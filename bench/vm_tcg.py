"""What TCG's translation buffer size and free page reporting do to a tiny VM, raw QEMU only.

Every variant is Corral's own ``qemu-system-x86_64`` command line for the tiny template
(``QemuDriver.config`` + ``build_argv``, 1 vCPU, 128 MiB, microvm, TCG) with one thing
changed: ``-accel tcg,tb-size=N`` (MiB; "default" is QEMU's own, 1 GiB of address space
touched as it fills) and/or ``free-page-reporting=on`` on the virtio-balloon. No corrald.

Per variant, ``--vms`` VMs; measured per VM:

* boot: launch to QEMU daemonized ("up") and to the guest's ready marker on the console,
  the VMs started one at a time, variants alternating (so load drifts hit all alike);
* idle: CPU % of one CPU over ``--window`` s after ``--settle`` s, all VMs idle at once;
  RSS by what holds it (guest RAM mapping, TCG buffer = anonymous executable mappings,
  QEMU's other anonymous memory, file pages shared with other processes);
* work: a fixed guest workload through the guest agent (many busybox applets, forks,
  file walks: code the translator must translate, and retranslate after a buffer flush),
  its wall time and the QEMU's CPU seconds, then RSS again; the guest's /proc/meminfo.

Run as root: .venv/bin/python bench/vm_tcg.py [--tb default,64,32,16] [--fpr] [--vms 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.drivers.qemu import agent
from corral.drivers.qemu.cmdline import VmConfig, VmPaths, build_argv
from corral.drivers.qemu.driver import QemuDriver
from corral.storage.images import build_root_disk
from corral.templates.builders.tiny import READY_MARKER, build_tiny

TICK = os.sysconf("SC_CLK_TCK")
GUEST = 128 << 20
WORK = (
    "i=0; while [ $i -lt {rounds} ]; do i=$((i+1)); "
    "ls -lR / >/dev/null 2>&1; find / -xdev -name '*.so' >/dev/null 2>&1; "
    "md5sum /bin/busybox >/dev/null; sha256sum /bin/busybox >/dev/null; "
    "gzip -c /bin/busybox | gunzip >/dev/null; "
    "seq 1 2000 | awk '{{s+=$1}} END {{print s}}' >/dev/null; "
    "seq 1 2000 | sed 's/1/x/g' | sort -r | uniq -c >/dev/null; "
    "tar -cf - /etc /sbin 2>/dev/null | bzip2 | bunzip2 >/dev/null; "
    "ps >/dev/null; dmesg >/dev/null; cat /proc/meminfo >/dev/null; "
    "done"
)


@dataclasses.dataclass
class Vm:
    label: str
    index: int
    cfg: VmConfig
    argv: list[str]
    pid: int = 0
    up: float = 0.0
    ready: float = 0.0

    @property
    def paths(self) -> VmPaths:
        return self.cfg.paths


def variant_argv(base: list[str], tb: str, fpr: bool, order: int | None = None) -> list[str]:
    """``base`` with tb-size ``tb``; ``fpr``: free page reporting on, ``order``: the guest's
    ``page_reporting.page_reporting_order`` (None: the kernel's, pageblock order 9)."""
    argv = list(base)
    i = argv.index("-append")
    words = [w for w in argv[i + 1].split() if not w.startswith("page_reporting.")]
    if order is not None:
        words.append(f"page_reporting.page_reporting_order={order}")
    argv[i + 1] = " ".join(words)
    i = argv.index("-accel")
    argv[i + 1] = "tcg" if tb == "default" else f"tcg,tb-size={tb}"
    for j, word in enumerate(argv):
        if word.startswith("virtio-balloon-"):
            argv[j] = word.split(",free-page-reporting=")[0] + (
                ",free-page-reporting=on" if fpr else "")
    return argv


def make_vm(root: Path, template_dir: Path, label: str, index: int, tb: str, fpr: bool,
            base_disk: Path, order: int | None = None) -> Vm:
    from corral.templates.image import TemplateImage

    template = TemplateImage.load(template_dir)
    directory = root / f"{label}-{index}"
    directory.mkdir(parents=True)
    disk = directory / "root.img"
    subprocess.run(["cp", "--sparse=always", str(base_disk), str(disk)], check=True)
    spec = InstanceSpec(id=index, name=f"vmdense-{label}-{index}", kind=Kind.VM,
                        template="tiny", resources=Resources(cpus=1, memory=GUEST, disk=64 << 20),
                        directory=directory)
    cfg = QemuDriver(accel="tcg").config(spec, template)
    (directory / "run").mkdir()
    argv = variant_argv(build_argv(shutil.which("qemu-system-x86_64") or "qemu", cfg), tb, fpr,
                        order)
    return Vm(label, index, cfg, argv)


def boot(vm: Vm, timeout: float = 120.0) -> None:
    started = time.monotonic()
    done = subprocess.run(vm.argv, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"{vm.label}: QEMU failed: {done.stderr.decode().strip()}")
    vm.up = time.monotonic() - started
    vm.pid = int(vm.paths.pidfile.read_text())
    while time.monotonic() - started < timeout:
        try:
            if READY_MARKER.encode() in vm.paths.console_log.read_bytes():
                vm.ready = time.monotonic() - started
                return
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{vm.label}-{vm.index} not ready within {timeout} s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_parts(pid: int) -> dict[str, float]:
    """MiB of RSS: guest RAM, TCG buffer (anonymous executable), other anonymous, files."""
    parts = {"guest": 0.0, "tcg": 0.0, "anon": 0.0, "files": 0.0}
    size, perms, path = 0, "", ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and ":" not in fields[0] and len(fields) >= 5:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            size, perms = end - start, fields[1]
            path = fields[5] if len(fields) > 5 else ""
        elif fields[0] == "Rss:":
            mib = int(fields[1]) / 1024
            if path.startswith("/") and not path.startswith("/memfd"):
                parts["files"] += mib
            elif size == GUEST:
                parts["guest"] += mib
            elif "x" in perms:
                parts["tcg"] += mib
            else:
                parts["anon"] += mib
    return parts


def exec_in(vm: Vm, argv: list[str], timeout: float) -> agent.Reply:
    rid = agent.new_id()
    client = agent.AgentClient(vm.paths.agent, vm.paths.agent_lock)
    return client.call(agent.encode_exec(rid, argv, timeout, b""), rid, timeout + 5)


def wait_agent(vm: Vm, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            exec_in(vm, ["true"], 5)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def meminfo(vm: Vm) -> dict[str, int]:
    out = exec_in(vm, ["cat", "/proc/meminfo"], 10).stdout.decode()
    found = {}
    for line in out.splitlines():
        key, value = line.split(":", 1)
        found[key] = int(value.split()[0]) // 1024
    return found


def stop(vm: Vm) -> None:
    if not vm.pid:
        return
    try:
        os.kill(vm.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while Path(f"/proc/{vm.pid}").exists():
        time.sleep(0.01)


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tb", default="default,64,32,16",
                        help="tb-size variants, MiB or 'default' (comma-separated)")
    parser.add_argument("--fpr", action="store_true",
                        help="also a variant with free-page-reporting=on (default tb-size; "
                             "with --fpr-tb: that tb-size)")
    parser.add_argument("--fpr-tb", default="default")
    parser.add_argument("--fpr-order", type=int, action="append", default=[],
                        help="a free-page-reporting variant with this guest reporting order "
                             "(page_reporting.page_reporting_order; repeatable)")
    parser.add_argument("--vms", type=int, default=2)
    parser.add_argument("--settle", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3, help="workload loop rounds")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    variants: list[tuple[str, str, bool, int | None]] = [
        (f"tb{tb}", tb, False, None) for tb in args.tb.split(",") if tb]
    if args.fpr:
        variants.append((f"tb{args.fpr_tb}-fpr", args.fpr_tb, True, None))
    variants += [(f"tb{args.fpr_tb}-fpr-o{o}", args.fpr_tb, True, o) for o in args.fpr_order]
    if len(variants) * args.vms > 20:
        sys.exit("at most 20 VMs at once on this shared host")
    root = Path(tempfile.mkdtemp(prefix="vmdense-tcg-"))
    root.chmod(0o711)
    vms: list[Vm] = []
    try:
        template_dir = root / "tiny"
        build_tiny(template_dir)
        from corral.templates.image import TemplateImage

        base = root / "base.img"
        build_root_disk(TemplateImage.load(template_dir).rootfs, base, 64 << 20)
        for i in range(args.vms):
            for label, tb, fpr, order in variants:
                vms.append(make_vm(root, template_dir, label, i, tb, fpr, base, order))
        print("e.g.", " ".join(vms[0].argv), "\n")
        for vm in vms:  # one at a time, variants alternating
            boot(vm)
        for vm in vms:
            wait_agent(vm)
        time.sleep(args.settle)
        before = {vm.pid: cpu_seconds(vm.pid) for vm in vms}
        began = time.monotonic()
        time.sleep(args.window)
        took = time.monotonic() - began
        idle = {vm.pid: (cpu_seconds(vm.pid) - before[vm.pid]) / took * 100 for vm in vms}
        rss_idle = {vm.pid: rss_parts(vm.pid) for vm in vms}
        mem_idle = {vm.pid: meminfo(vm) for vm in vms}
        work: dict[int, tuple[float, float]] = {}
        for _ in range(2):  # twice: the second run shows retranslation, not first translation
            for vm in vms:
                cpu0, t0 = cpu_seconds(vm.pid), time.monotonic()
                reply = exec_in(vm, ["sh", "-c", WORK.format(rounds=args.rounds)], 600)
                if reply.exit_code != 0:
                    raise RuntimeError(f"workload failed: {reply.stderr!r}")
                work[vm.pid] = (time.monotonic() - t0, cpu_seconds(vm.pid) - cpu0)
        rss_work = {vm.pid: rss_parts(vm.pid) for vm in vms}
        print(f"{'variant':<18} {'up s':>6} {'ready s':>7} {'idle CPU%':>9} "
              f"{'RSS idle: guest/tcg/anon/files MiB':>36} {'work s':>7} {'work CPU s':>10} "
              f"{'RSS after work: guest/tcg':>26} {'guest MemFree/Cached MiB':>25}")
        for label, *_ in variants:
            group = [vm for vm in vms if vm.label == label]
            ri = [rss_idle[vm.pid] for vm in group]
            rw = [rss_work[vm.pid] for vm in group]
            mi = [mem_idle[vm.pid] for vm in group]
            idle_rss = "/".join(f"{mean([r[k] for r in ri]):.0f}"
                                for k in ("guest", "tcg", "anon", "files"))
            work_rss = "/".join(f"{mean([r[k] for r in rw]):.0f}" for k in ("guest", "tcg"))
            free = (f"{mean([m.get('MemFree', 0) for m in mi]):.0f}/"
                    f"{mean([m.get('Cached', 0) for m in mi]):.0f}")
            print(f"{label:<18} {mean([v.up for v in group]):>6.2f} "
                  f"{mean([v.ready for v in group]):>7.2f} "
                  f"{mean([idle[v.pid] for v in group]):>9.1f} {idle_rss:>36} "
                  f"{mean([work[v.pid][0] for v in group]):>7.1f} "
                  f"{mean([work[v.pid][1] for v in group]):>10.1f} {work_rss:>26} {free:>25}")
        print(f"(per-VM means of {args.vms}; the workload's second run; host load "
              f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs)")
    finally:
        for vm in vms:
            stop(vm)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
