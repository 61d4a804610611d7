"""The QEMU driver against real QEMU: the tiny template as a VM (TCG here unless KVM probes)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.domain.errors import Conflict
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.drivers.base import RuntimeState
from corral.drivers.qemu import QemuDriver
from corral.drivers.qemu import resources as vm_resources
from corral.drivers.qemu.cmdline import VmPaths
from corral.drivers.qemu.resources import cgroup_path
from corral.host import cgroupfs
from corral.host.cgroups import CgroupVersion, read_layout
from corral.templates.builders.tiny import READY_MARKER
from corral.templates.image import TemplateImage
from tests.system.fixtures_template import tiny_template

__all__ = ["tiny_template"]

pytestmark = [pytest.mark.system]
if shutil.which("qemu-system-x86_64") is None:
    pytestmark.append(pytest.mark.skip(reason="qemu-system-x86_64 is not installed"))
elif not list(Path("/boot").glob("vmlinuz-*")):
    pytestmark.append(pytest.mark.skip(reason="no host kernel in /boot (linux-image-amd64)"))

BOOT_TIMEOUT = 60.0


def qemu_pids_using(directory: Path) -> list[int]:
    """Pids of processes whose command line mentions ``directory``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"qemu-system" in cmdline and str(directory).encode() in cmdline:
            found.append(int(entry.name))
    return found


def wait_for_marker(driver: QemuDriver, spec: InstanceSpec, count: int = 1) -> float:
    started = time.monotonic()
    while time.monotonic() - started < BOOT_TIMEOUT:
        if driver.console_log(spec, 1 << 20).count(READY_MARKER.encode()) >= count:
            return time.monotonic() - started
        time.sleep(0.05)
    log = driver.console_log(spec).decode(errors="replace")
    raise AssertionError(f"no '{READY_MARKER}' #{count} within {BOOT_TIMEOUT} s:\n{log}")


@pytest.fixture
def vm(tmp_path: Path, tiny_template: TemplateImage) -> Iterator[tuple[QemuDriver, InstanceSpec]]:
    driver = QemuDriver()
    spec = InstanceSpec(
        id=1,
        name="vm1",
        kind=Kind.VM,
        template="tiny",
        resources=Resources(cpus=1, memory=160 * 1024**2, disk=64 * 1024**2),
        directory=tmp_path / "vm1",
    )
    driver.create(spec, tiny_template, lambda fraction, phase: None)
    yield driver, spec
    # Leave nothing behind, whatever the test did.
    QemuDriver(accel="tcg").stop(spec, force=True, timeout=0)
    for pid in qemu_pids_using(spec.directory):
        os.kill(pid, 9)
    if spec.directory.exists():
        QemuDriver(accel="tcg").delete(spec)


def test_vm_lifecycle(vm: tuple[QemuDriver, InstanceSpec], tiny_template: TemplateImage,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    driver, spec = vm
    paths = VmPaths(spec.directory, spec.run_dir)
    assert driver.status(spec).state == RuntimeState.STOPPED

    started = time.monotonic()
    driver.start(spec, tiny_template)
    boot = wait_for_marker(driver, spec)
    print(f"\nboot to ready marker: {time.monotonic() - started:.2f} s (after start: {boot:.2f})")
    status = driver.status(spec)
    assert status.state == RuntimeState.RUNNING
    assert status.pid is not None
    with pytest.raises(Conflict):
        driver.start(spec, tiny_template)
    with pytest.raises(Conflict):
        driver.delete(spec)

    t0 = time.monotonic()
    result = driver.exec(spec, ["uname", "-a"], timeout=30)
    first = time.monotonic() - t0
    assert result.exit_code == 0, result
    assert b"Linux vm1 " in result.stdout
    assert driver.status(spec).details["agent"] == "connected"  # its port is open
    assert result.stderr == b""
    t0 = time.monotonic()
    for _ in range(5):
        driver.exec(spec, ["true"], timeout=30)
    print(
        f"exec round trip: first {first * 1000:.0f} ms, mean of 5 "
        f"{(time.monotonic() - t0) / 5 * 1000:.0f} ms"
    )

    script = "cat; echo to-stderr >&2; exit 7"
    result = driver.exec(spec, ["sh", "-c", script], timeout=30, stdin=b"line one\nline two\n")
    assert (result.exit_code, result.stdout, result.stderr) == (
        7,
        b"line one\nline two\n",
        b"to-stderr\n",
    )
    result = driver.exec(spec, ["printf", "[%s]", "", "a b", "x\n"], timeout=30)
    assert result.stdout == b"[][a b][x\n]"
    result = driver.exec(spec, ["no-such-command"], timeout=30)
    assert result.exit_code == 127
    t0 = time.monotonic()
    result = driver.exec(spec, ["sleep", "30"], timeout=1)
    assert result.exit_code != 0
    assert time.monotonic() - t0 < 10

    driver.suspend(spec)
    assert driver.status(spec).state == RuntimeState.SUSPENDED
    driver.resume(spec)
    assert driver.status(spec).state == RuntimeState.RUNNING
    assert driver.exec(spec, ["true"], timeout=30).exit_code == 0

    t0 = time.monotonic()
    driver.stop(spec, force=False, timeout=30)
    print(f"graceful stop: {time.monotonic() - t0:.2f} s")
    assert driver.status(spec).state == RuntimeState.STOPPED
    assert b"corral-guest-stopping" in driver.console_log(spec)
    assert not any(p.exists() for p in paths.sockets())

    # the second start under a launch priority (host policy vm_launch_priority): QEMU comes
    # up in its group at 8x the default weight; right after up, the group's own weight again
    layout = read_layout()
    weight_file = ("cpu.shares" if layout.controller_version("cpu") == CgroupVersion.V1
                   else "cpu.weight")

    def weight() -> str:
        return (cgroupfs.read(layout, "cpu", cgroup_path(spec), weight_file) or "").strip()

    launched_at: list[str] = []
    real_started = vm_resources.started

    def on_started(*args: Any, **kwargs: Any) -> None:
        launched_at.append(weight())  # QEMU is up: what its launch ran at
        real_started(*args, **kwargs)

    monkeypatch.setattr(vm_resources, "started", on_started)
    driver.launch_priority = lambda: 8
    driver.start(spec, tiny_template)
    driver.launch_priority = lambda: 1
    expected = (["8192"], "1024") if weight_file == "cpu.shares" else (["800"], "100")
    assert (launched_at, weight()) == expected
    wait_for_marker(driver, spec, count=2)
    assert driver.exec(spec, ["cat", "/proc/uptime"], timeout=30).exit_code == 0
    t0 = time.monotonic()
    driver.stop(spec, force=True, timeout=30)
    print(f"forced stop: {time.monotonic() - t0:.2f} s")
    assert driver.status(spec).state == RuntimeState.STOPPED
    assert qemu_pids_using(spec.directory) == []
    # the cgroup stays while the VM exists (the next start reuses it)
    assert cgroupfs.group_exists(layout, "cpu", cgroup_path(spec))

    def procs() -> str:
        return (cgroupfs.read(layout, "cpu", cgroup_path(spec), "cgroup.procs") or "").strip()

    deadline = time.monotonic() + 10  # a QEMU that just died is listed until it is released
    while procs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not procs()

    driver.delete(spec)
    assert not spec.disk_path.exists()
    assert not paths.run.exists()
    assert driver.status(spec).state == RuntimeState.MISSING
    assert not cgroupfs.group_exists(layout, "cpu", cgroup_path(spec))


def test_vm_outlives_its_driver_and_stops_from_suspended(
    vm: tuple[QemuDriver, InstanceSpec], tiny_template: TemplateImage
) -> None:
    driver, spec = vm
    driver.start(spec, tiny_template)
    wait_for_marker(driver, spec)
    pid = driver.status(spec).pid
    del driver

    fresh = QemuDriver(accel="tcg")
    status = fresh.status(spec)
    assert status.state == RuntimeState.RUNNING
    assert status.pid == pid
    assert fresh.exec(spec, ["hostname"], timeout=30).stdout == b"vm1\n"

    console = fresh.open_console(spec)
    try:
        console.write(b"echo console-$((40 + 2))\n")
        seen = b""
        deadline = time.monotonic() + 20
        while b"console-42" not in seen and time.monotonic() < deadline:
            seen += console.read(4096)
        assert b"console-42" in seen
    finally:
        console.close()

    fresh.suspend(spec)
    fresh.stop(spec, force=False, timeout=30)  # resumes, then powers off
    assert fresh.status(spec).state == RuntimeState.STOPPED
    assert qemu_pids_using(spec.directory) == []
