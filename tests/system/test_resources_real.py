"""Resource limits measured on real containers and VMs (tiny template).

Tolerances hold on a noisy 2-core machine; every test prints what it measured.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.drivers.base import Applied
from corral.drivers.cgroup_limits import VM_CONTROLLERS
from corral.drivers.lxc import LxcDriver
from corral.drivers.lxc.driver import lxc_name, wait_for_console
from corral.drivers.lxc.resources import cgroup_path as ct_cgroup_path
from corral.drivers.qemu import QemuDriver
from corral.drivers.qemu.resources import cgroup_path
from corral.host import cgroupfs
from corral.host.cgroups import read_layout
from corral.host.idmap import ensure_root_range
from corral.templates.builders.tiny import READY_MARKER
from corral.templates.image import TemplateImage
from tests.system.fixtures_template import tiny_template

__all__ = ["tiny_template"]
MiB = 1024**2


def _why_not() -> str:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("lxc-start", "qemu-system-x86_64"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if (os.cpu_count() or 1) < 2:
        return "needs 2 CPUs (one to pin the busy containers to)"
    return ""


pytestmark = [pytest.mark.system, pytest.mark.skipif(bool(_why_not()), reason=_why_not())]


@dataclass
class Env:
    lxc: LxcDriver
    qemu: QemuDriver
    template: TemplateImage
    root: Path
    made: list[InstanceSpec] = dataclasses.field(default_factory=list)

    def spec(self, kind: Kind, res: Resources) -> InstanceSpec:
        ident = 500000 + secrets.randbelow(400000)
        spec = InstanceSpec(id=ident, name=f"r{ident}", kind=kind, template="tiny",
                            resources=res, directory=self.root / str(ident))
        self.made.append(spec)
        return spec

    def driver(self, spec: InstanceSpec) -> LxcDriver | QemuDriver:
        return self.lxc if spec.kind is Kind.CT else self.qemu

    def up(self, spec: InstanceSpec) -> None:
        driver = self.driver(spec)
        driver.create(spec, self.template, lambda f, p: None)
        driver.start(spec, self.template)
        marker = READY_MARKER.encode()
        if spec.kind is Kind.CT:
            assert wait_for_console(spec, self.lxc, marker, 15), self.lxc.console_log(spec)
        else:
            deadline = time.monotonic() + 120
            while marker not in self.qemu.console_log(spec, 1 << 20):
                assert time.monotonic() < deadline, self.qemu.console_log(spec).decode()
                time.sleep(0.1)

    def change(self, spec: InstanceSpec, **changes: object) -> tuple[InstanceSpec, dict[str, str]]:
        new = dataclasses.replace(spec.resources, **changes)  # type: ignore[arg-type]
        updated = dataclasses.replace(spec, resources=new)
        applied = self.driver(spec).apply_resources(updated, spec.resources, new)
        self.made[self.made.index(spec)] = updated
        return updated, {c.key: c.applied.value for c in applied.changes}


@pytest.fixture(scope="module")
def env(tiny_template: TemplateImage) -> Iterator[Env]:
    ensure_root_range()
    root = Path(tempfile.mkdtemp(prefix="corral-res-test-"))
    root.chmod(0o711)
    found = Env(LxcDriver(root / "lxc"), QemuDriver(), tiny_template, root)
    try:
        yield found
    finally:
        for spec in found.made:
            driver = found.driver(spec)
            try:
                driver.stop(spec, force=True, timeout=0)
            except Exception as exc:  # keep cleaning the others
                print(f"stop {spec.name}: {exc}")
            try:
                driver.delete(spec)
            except Exception as exc:
                print(f"delete {spec.name}: {exc}")
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Busy:
    """A shell busy loop inside an instance (``busy``), run by a thread."""

    env: Env
    spec: InstanceSpec
    flag: str
    thread: threading.Thread

    def stop(self) -> None:
        """End the loop now (the measurement is over) rather than at its deadline."""
        self.env.driver(self.spec).exec(self.spec, ["touch", self.flag], timeout=30)
        self.thread.join()


def busy(env: Env, spec: InstanceSpec, seconds: float) -> Busy:
    """A shell busy loop inside the instance for at most ``seconds`` (in a thread): its
    ``stop`` ends it as soon as the test has measured."""
    flag = f"/tmp/busy-stop-{secrets.token_hex(4)}"
    script = (f"end=$(( $(date +%s) + {int(seconds)} )); "
              f"while [ ! -e {flag} ] && [ $(date +%s) -lt $end ]; do :; done")

    def work() -> None:
        env.driver(spec).exec(spec, ["sh", "-c", script], timeout=seconds + 10)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return Busy(env, spec, flag, thread)


def cpu_percent(env: Env, specs: list[InstanceSpec], window: float) -> list[float]:
    before = [env.driver(s).stats(s).cpu_ns for s in specs]
    began = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - began
    after = [env.driver(s).stats(s).cpu_ns for s in specs]
    return [(a - b) / (elapsed * 1e9) * 100 for a, b in zip(after, before, strict=True)]


def test_shares_split_one_pinned_core_about_4_to_1(env: Env) -> None:
    heavy = env.spec(Kind.CT, Resources(memory=64 * MiB, disk=64 * MiB, cpu_pin="1",
                                        cpu_shares=1024))
    light = env.spec(Kind.CT, Resources(memory=64 * MiB, disk=64 * MiB, cpu_pin="1",
                                        cpu_shares=256))
    env.up(heavy)
    env.up(light)
    loops = [busy(env, heavy, 12), busy(env, light, 12)]
    time.sleep(2)
    h, lt = cpu_percent(env, [heavy, light], 6)
    ratio = h / max(lt, 0.1)
    print(f"\nshares 1024 vs 256 pinned to CPU 1: {h:.1f} % vs {lt:.1f} % -> {ratio:.2f}:1")
    assert 2.8 < ratio < 5.5
    for loop in loops:
        loop.stop()
    assert h + lt < 115  # both on one core


def test_cpu_limit_caps_a_container_and_changes_live(env: Env) -> None:
    ct = env.spec(Kind.CT, Resources(cpus=2, memory=64 * MiB, disk=64 * MiB, cpu_limit=50))
    env.up(ct)
    layout = read_layout()

    def throttled() -> int:
        stat = cgroupfs.read(layout, "cpu", ct_cgroup_path(lxc_name(ct)), "cpu.stat") or ""
        return cgroupfs.parse_flat_keyed(stat).get("nr_throttled", 0)

    loop = busy(env, ct, 14)
    time.sleep(1.5)
    before = throttled()
    (capped,) = cpu_percent(env, [ct], 5)
    periods = throttled() - before
    ct, applied = env.change(ct, cpu_limit=25)
    assert applied == {"cpu_limit": Applied.LIVE.value}
    time.sleep(0.5)
    before = throttled()
    (lower,) = cpu_percent(env, [ct], 5)
    lower_periods = throttled() - before
    loop.stop()
    print(f"\nCT cpu_limit=50: {capped:.1f} % (throttled in {periods} of ~50 periods); "
          f"live change to 25: {lower:.1f} % (throttled in {lower_periods})")
    # Upper bounds prove the cap; throttled periods prove the cap (not a loaded host) held it.
    assert 15 < capped < 56 and periods >= 10
    assert 5 < lower < 30 and lower_periods >= 10


def test_cpu_limit_caps_the_qemu_process(env: Env) -> None:
    vm = env.spec(Kind.VM, Resources(cpus=1, max_cpus=1, memory=160 * MiB, disk=64 * MiB,
                                     cpu_limit=50))
    env.up(vm)
    layout = read_layout()
    pid = env.qemu.status(vm).pid
    assert pid is not None
    for controller in VM_CONTROLLERS:  # started there (placement.py), in every hierarchy
        if layout.controller_version(controller) is None:
            continue
        procs = cgroupfs.read(layout, controller, cgroup_path(vm), "cgroup.procs") or ""
        assert str(pid) in procs.split(), controller

    def throttled() -> int:
        stat = cgroupfs.read(layout, "cpu", cgroup_path(vm), "cpu.stat") or ""
        return cgroupfs.parse_flat_keyed(stat).get("nr_throttled", 0)

    loop = busy(env, vm, 16)
    time.sleep(2)
    before = throttled()
    (capped,) = cpu_percent(env, [vm], 5)
    periods = throttled() - before
    vm, applied = env.change(vm, cpu_limit=None)
    (free,) = cpu_percent(env, [vm], 5)
    loop.stop()
    print(f"\nVM cpu_limit=50 (QEMU process, TCG): {capped:.1f} %, throttled in {periods} "
          f"of ~50 periods; cap lifted live: {free:.1f} % (the rest of a loaded 2-core host)")
    assert applied == {"cpu_limit": "live"}
    assert 15 < capped < 56
    assert periods >= 10  # the cap, not the guest or the host, held it


def test_memory_limit_oom_kills_inside_only(env: Env) -> None:
    small = env.spec(Kind.CT, Resources(memory=48 * MiB, disk=64 * MiB))
    other = env.spec(Kind.CT, Resources(memory=64 * MiB, disk=64 * MiB))
    env.up(small)
    env.up(other)
    hog = "x=$(head -c 150000000 /dev/zero | tr '\\0' a); echo survived ${#x}"
    result = env.lxc.exec(small, ["sh", "-c", hog], timeout=60)
    stats = env.lxc.stats(small)
    print(f"\nmemory=48M hog of 150 MB: exit {result.exit_code}, oom_kills {stats.oom_kills}, "
          f"{result.stdout!r}")
    assert b"survived" not in result.stdout
    assert stats.oom_kills >= 1
    assert env.lxc.status(small).state.value == "running"  # init survived
    assert env.lxc.exec(small, ["true"], timeout=10).exit_code == 0
    assert env.lxc.exec(other, ["true"], timeout=10).exit_code == 0
    assert env.lxc.stats(other).oom_kills == 0


def test_io_write_limit_holds_for_direct_io(env: Env) -> None:
    ct = env.spec(Kind.CT, Resources(memory=64 * MiB, disk=128 * MiB, io_write_bps=4 * MiB))
    env.up(ct)
    began = time.monotonic()
    result = env.lxc.exec(
        ct, ["dd", "if=/dev/zero", "of=/io-test", "bs=1M", "count=16", "oflag=direct"],
        timeout=60)
    elapsed = time.monotonic() - began
    rate = 16 / elapsed
    print(f"\nio_write_bps=4M, dd 16 MiB O_DIRECT: {elapsed:.2f} s -> {rate:.2f} MiB/s "
          f"({result.stderr.decode().strip().splitlines()[-1:]})")
    assert result.exit_code == 0, result.stderr
    assert 2.0 < rate < 5.0


def _guest(env: Env, spec: InstanceSpec, command: str) -> str:
    result = env.qemu.exec(spec, ["sh", "-c", command], timeout=20)
    assert result.exit_code == 0, result.stderr
    return result.stdout.decode().strip()


def _meminfo_total(env: Env, spec: InstanceSpec) -> int:
    line = _guest(env, spec, "grep MemTotal /proc/meminfo")
    return int(line.split()[1]) * 1024


def test_vm_live_changes_visible_inside(env: Env) -> None:
    vm = env.spec(Kind.VM, Resources(cpus=1, max_cpus=2, memory=256 * MiB, disk=64 * MiB))
    env.up(vm)
    assert _guest(env, vm, "cat /sys/devices/system/cpu/online") == "0"
    vm, applied = env.change(vm, cpus=2)
    online = _guest(env, vm, "cat /sys/devices/system/cpu/online")
    before = _meminfo_total(env, vm)
    vm, applied_mem = env.change(vm, memory=160 * MiB)
    deadline = time.monotonic() + 20
    after = before
    while time.monotonic() < deadline and before - after < 64 * MiB:
        time.sleep(0.5)
        after = _meminfo_total(env, vm)
    vm, applied_disk = env.change(vm, disk=128 * MiB)
    sectors = int(_guest(env, vm, "cat /sys/block/vda/size"))
    vm, too_many = env.change(vm, cpus=4)
    print(f"\nVM live: cpus 1->2 online '{online}' ({applied}); MemTotal {before // MiB} -> "
          f"{after // MiB} MiB after balloon to 160M ({applied_mem}); vda {sectors * 512 // MiB}"
          f" MiB ({applied_disk}); cpus=4 > max_cpus: {too_many}")
    assert online == "0-1" and applied == {"cpus": "live"}
    assert before - after >= 64 * MiB and applied_mem == {"memory": "live"}
    assert sectors * 512 == 128 * MiB and applied_disk == {"disk": "live"}
    assert too_many == {"cpus": "next start"}


def test_big_vm_boots_on_lazy_allocation(env: Env) -> None:
    vm = env.spec(Kind.VM, Resources(cpus=8, memory=64 * 1024**3, disk=2 * 1024**4))
    began = time.monotonic()
    env.up(vm)
    booted = time.monotonic() - began
    cpus = _guest(env, vm, "cat /sys/devices/system/cpu/online")
    total = _meminfo_total(env, vm)
    size = int(_guest(env, vm, "cat /sys/block/vda/size")) * 512
    stats = env.qemu.stats(vm)
    print(f"\nbig VM: create+boot {booted:.1f} s, online CPUs {cpus}, MemTotal "
          f"{total / 1024**3:.1f} GiB, vda {size / 1024**4:.2f} TiB, QEMU memory "
          f"{stats.memory_used / MiB:.0f} MiB, image allocated {stats.disk_used / MiB:.0f} MiB")
    assert cpus == "0-7"
    assert total > 60 * 1024**3
    assert size == 2 * 1024**4
