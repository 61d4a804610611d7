"""QEMU's own start cost for Corral's tiny VM, by option: raw QEMU only, no corrald.

Every variant is Corral's own ``qemu-system-x86_64`` command line for the tiny template
(``QemuDriver.config`` + ``build_argv``: 1 vCPU, 128 MiB, microvm, TCG) with one thing
changed. Per launch, from the exec:

* up: the launcher exits (QEMU daemonizes once its monitor listens and, without ``-S``,
  its vCPUs run: what Corral calls "runtime up");
* QMP: the greeting read on the monitor socket right after;
* CPU: the launcher's own (ld.so, option parsing; reaped) + the daemon's at "up" (machine
  set-up, kernel load; /proc/<pid>/stat), in ms.

The variants run one launch at a time, alternating (load drifts hit all alike); each QEMU is
killed after its greeting. ``floor``: ``qemu-system-x86_64 -version`` (loading the binary
and its libraries, nothing else).

Run as root: .venv/bin/python bench/vm_launch.py [--runs 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.drivers.qemu.cmdline import VmConfig, VmPaths, build_argv
from corral.drivers.qemu.driver import QemuDriver
from corral.templates.builders.tiny import build_tiny

TICK = os.sysconf("SC_CLK_TCK")


def _swap(old: str, new: str) -> Callable[[list[str]], list[str]]:
    return lambda argv: [a.replace(old, new) if old in a else a for a in argv]


def _drop(flag: str, with_value: bool = True) -> Callable[[list[str]], list[str]]:
    def edit(argv: list[str]) -> list[str]:
        i = argv.index(flag)
        return argv[:i] + argv[i + (2 if with_value else 1):]
    return edit


def _drop_device(prefix: str) -> Callable[[list[str]], list[str]]:
    def edit(argv: list[str]) -> list[str]:
        i = next(i for i, a in enumerate(argv) if a.startswith(prefix))
        return argv[:i - 1] + argv[i + 1:]
    return edit


VARIANTS: dict[str, Callable[[list[str]], list[str]]] = {
    "corral": lambda argv: argv,
    "-S": lambda argv: [*argv, "-S"],
    "tb-size default (1 GiB)": _swap("tcg,tb-size=32", "tcg"),
    "merge=off (no KSM madvise)": _swap("merge=on", "merge=off"),
    "no free page reporting": _swap(",free-page-reporting=on", ""),
    "no balloon": _drop_device("virtio-balloon-device"),
    "prealloc=on (no reserve=off)": _swap("reserve=off,merge=on", "merge=on,prealloc=on"),
    "no -kernel/-initrd (nothing to boot)": lambda argv: _drop("-append")(
        _drop("-initrd")(_drop("-kernel")(argv))),
}


def _cpu_ms(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return float("nan")
    return 1000 * (int(fields[11]) + int(fields[12])) / TICK


def _greeting(path: Path, timeout: float = 30) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        got = b""
        while b"\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("QMP closed before its greeting")
            got += chunk


def launch(argv: list[str], paths: VmPaths) -> tuple[float, float, float, float]:
    """(up s, QMP greeting s, launcher CPU ms, daemon CPU ms at up)."""
    paths.pidfile.unlink(missing_ok=True)
    began = time.monotonic()
    pid = os.posix_spawn(argv[0], argv, os.environ)
    _, status, usage = os.wait4(pid, 0)
    up = time.monotonic() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"QEMU exited {os.waitstatus_to_exitcode(status)}: {argv}")
    daemon = int(paths.pidfile.read_text())
    daemon_cpu = _cpu_ms(daemon)
    _greeting(paths.qmp)
    qmp = time.monotonic() - began
    os.kill(daemon, signal.SIGKILL)
    while Path(f"/proc/{daemon}").exists():
        time.sleep(0.005)
    for sock in paths.sockets():
        sock.unlink(missing_ok=True)
    return up, qmp, 1000 * (usage.ru_utime + usage.ru_stime), daemon_cpu


def floor(qemu: str) -> tuple[float, float, float, float]:
    began = time.monotonic()
    pid = os.posix_spawn(qemu, [qemu, "-version"], os.environ,
                         file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
    _, _, usage = os.wait4(pid, 0)
    took = time.monotonic() - began
    return took, took, 1000 * (usage.ru_utime + usage.ru_stime), 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--only", default="", help="comma-separated variant names")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    root = Path(tempfile.mkdtemp(prefix="corral-bench-launch-"))
    try:
        template = build_tiny(root / "tiny")
        disk = root / "root.img"
        with disk.open("wb") as f:
            f.truncate(64 << 20)
        spec = InstanceSpec(id=1, name="launch", kind=Kind.VM, template="tiny",
                            resources=Resources(cpus=1, memory=128 << 20, disk=64 << 20),
                            directory=root / "vm", root_disk=disk)
        paths = VmPaths(directory=root / "vm", run=root / "vm" / "run")
        paths.run.mkdir(parents=True)
        cfg: VmConfig = dataclasses.replace(QemuDriver().config(spec, template), disk=disk,
                                            paths=paths)
        qemu = shutil.which("qemu-system-x86_64") or "qemu-system-x86_64"
        base = build_argv(qemu, cfg)
        q35 = build_argv(qemu, dataclasses.replace(cfg, machine="q35"))
        VARIANTS["q35 (PCI devices)"] = lambda _argv: q35
        chosen = {k: v for k, v in VARIANTS.items()
                  if not args.only or k in args.only.split(",")}
        samples: dict[str, list[tuple[float, float, float, float]]] = {
            "floor: qemu -version": [], **{k: [] for k in chosen}}
        for _ in range(args.runs):
            samples["floor: qemu -version"].append(floor(qemu))
            for name, edit in chosen.items():
                samples[name].append(launch(edit(base), paths))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"conditions: {os.cpu_count()} CPUs; load {load}; {args.runs} launches per variant, "
          f"alternating; medians; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"{'variant':<38} | {'up ms':>7} | {'QMP ms':>7} | {'launcher CPU':>12} | "
          f"{'daemon CPU':>10} | {'CPU ms':>7}")
    for name, got in samples.items():
        med = [statistics.median(col) for col in zip(*got, strict=True)]
        print(f"{name:<38} | {1000 * med[0]:7.0f} | {1000 * med[1]:7.0f} | {med[2]:12.0f} | "
              f"{med[3]:10.0f} | {statistics.median(g[2] + g[3] for g in got):7.0f}")


if __name__ == "__main__":
    main()
