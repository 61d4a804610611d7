"""The contract every driver passes: fake (both kinds), lxc and qemu, the same assertions.

Real drivers are skipped with the machine's own reason where the host cannot run them.
Beyond the lifecycle (one instance per driver, made and deleted in the test), one running
guest per driver serves the cases of its optional parts in turn -- capabilities, stats,
resources set and read back, NIC hot-plug, snapshots -- so a real guest boots twice per
driver, not once per case. Each case is skipped only by what the driver's ``Capabilities``
say (never by its name); guest-visible checks need ``guest_os`` (the fake runs exec on the
host). The guest boots the tiny template on the q35 machine, which has a hot-plug bus (a
microvm VM refuses NIC hot-plug: the lifecycle test keeps the default microvm).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from corral.domain.errors import HostFailure
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.network import NetworkSpec, NetworkType, NicSpec
from corral.domain.resources import Resources
from corral.drivers.base import Applied, Driver, RuntimeState
from corral.drivers.snapshots import ROOT, DiskCopy
from corral.templates.image import TemplateImage
from tests.integration.conftest import wait_until

MiB = 1024**2

DriverFactory = Callable[[Path], Driver]


def _fake(kind: Kind) -> DriverFactory:
    def make(_root: Path) -> Driver:
        from corral.drivers.fake.driver import FakeDriver

        return FakeDriver(kind)

    return make


def _lxc(root: Path) -> Driver:
    from corral.drivers.lxc.driver import LxcDriver

    return LxcDriver(root / "lxc")


def _qemu(_root: Path) -> Driver:
    from corral.drivers.qemu.driver import QemuDriver

    return QemuDriver()


def _unavailable(tool: str) -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which(tool) is None:
        return f"{tool} is not installed on this host"
    return None


CASES = [
    pytest.param((_fake(Kind.CT), Kind.CT, None), id="fake-ct"),
    pytest.param((_fake(Kind.VM), Kind.VM, None), id="fake-vm"),
    pytest.param((_lxc, Kind.CT, "lxc-start"), id="lxc", marks=pytest.mark.system),
    pytest.param((_qemu, Kind.VM, "qemu-system-x86_64"), id="qemu", marks=pytest.mark.system),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> TemplateImage:
    if shutil.which("busybox") is None or not list(Path("/boot").glob("vmlinuz-*")):
        from tests.integration.conftest import write_fake_template

        root = tmp_path_factory.mktemp("fake-template")
        write_fake_template(root)
        return TemplateImage.load(root / "tiny")
    from corral.templates.builders.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("template-tiny"))


@pytest.fixture(scope="module")
def q35_template(template: TemplateImage, tmp_path_factory: pytest.TempPathFactory,
                 ) -> TemplateImage:
    """The tiny template on the q35 machine (PCIe hot-plug), where it could be built."""
    if not template.kernel.exists():
        return template
    from corral.templates.builders.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("template-q35"), machine="q35")


def _skip_unless_runnable(tool: str | None, template: TemplateImage) -> None:
    if tool is not None:
        reason = _unavailable(tool)
        if reason:
            pytest.skip(reason)
        if not template.kernel.exists():
            pytest.skip("the tiny template could not be built here (no busybox or kernel)")


def _new_instance(factory: DriverFactory, kind: Kind, serial: int,
                  ) -> tuple[Driver, InstanceSpec, Path]:
    # Unprivileged containers (host uid 100000) must be able to walk to their disk image,
    # and pytest's tmp_path sits below a 0700 directory.
    root = Path(tempfile.mkdtemp(prefix="corral-contract-"))
    root.chmod(0o711)
    # ids name LXC containers, cgroups and NIC devices: unique per run, as another run of
    # this suite may share the host
    ident = 900_000 + (os.getpid() % 10_000) * 10 + serial
    spec = InstanceSpec(
        id=ident, name=f"contract-{kind.value}-{ident}", kind=kind, template="tiny",
        resources=Resources(cpus=1, memory=128 * MiB, disk=64 * MiB),
        directory=root / "instance",
    )
    spec.directory.mkdir()
    return factory(root), spec, root


def _remove(driver: Driver, spec: InstanceSpec, root: Path) -> None:
    status = driver.status(spec).state
    if status in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
        driver.stop(spec, force=True, timeout=0)
    if driver.status(spec).state is not RuntimeState.MISSING:
        driver.delete(spec)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest, template: TemplateImage,
         ) -> Iterator[tuple[Driver, InstanceSpec, TemplateImage, DriverFactory, Path]]:
    factory, kind, tool = request.param
    _skip_unless_runnable(tool, template)
    driver, spec, root = _new_instance(factory, kind, 0)
    spec = replace(spec, template=template.name)
    try:
        yield driver, spec, template, factory, root
    finally:
        _remove(driver, spec, root)


@dataclass
class Guest:
    """A running instance shared by the cases of one driver (``spec`` follows their
    changes, as the daemon's record would)."""

    driver: Driver
    spec: InstanceSpec
    template: TemplateImage
    root: Path

    def exec(self, command: str) -> str:
        done = self.driver.exec(self.spec, ["sh", "-c", command], timeout=60)
        assert done.exit_code == 0, f"{command}: {done.stderr!r}"
        return done.stdout.decode()

    def boot(self) -> None:
        self.driver.start(self.spec, self.template)
        assert _wait_for(self._answers, 120), f"{self.spec.name} never answered exec"

    def _answers(self) -> bool:
        with contextlib.suppress(HostFailure):
            return self.driver.exec(self.spec, ["true"], 10).exit_code == 0
        return False


@pytest.fixture(scope="module", params=CASES)
def guest(request: pytest.FixtureRequest, q35_template: TemplateImage) -> Iterator[Guest]:
    factory, kind, tool = request.param
    _skip_unless_runnable(tool, q35_template)
    driver, spec, root = _new_instance(factory, kind, 1)
    shared = Guest(driver, replace(spec, template=q35_template.name), q35_template, root)
    try:
        driver.create(shared.spec, q35_template, lambda fraction, phase: None)
        shared.boot()
        yield shared
    finally:
        _remove(driver, shared.spec, root)


_wait_for = wait_until


def _state(driver: Driver, spec: InstanceSpec) -> RuntimeState:
    """The state ``status`` says, checked against the batch read (``statuses``)."""
    state = driver.status(spec).state
    assert driver.statuses([spec]) == {spec.id: driver.statuses([spec])[spec.id]}
    assert driver.statuses([spec])[spec.id].state is state
    return state


def test_driver_contract(
    case: tuple[Driver, InstanceSpec, TemplateImage, DriverFactory, Path],
) -> None:
    driver, spec, template, factory, root = case
    assert driver.capabilities().kind is driver.kind is spec.kind
    assert _state(driver, spec) is RuntimeState.MISSING

    driver.create(spec, template, lambda fraction, phase: None)
    assert _state(driver, spec) is RuntimeState.STOPPED
    assert spec.disk_path.exists()

    driver.start(spec, template)
    status = driver.status(spec)
    assert status.state is RuntimeState.RUNNING and status.pid
    assert driver.statuses([spec])[spec.id].pid == status.pid
    assert driver.stats_many([spec])[spec.id].running
    assert driver.cpu_times([spec])[spec.id] >= 0
    assert _wait_for(lambda: b"corral-guest-ready" in driver.console_log(spec), 60)

    ok = driver.exec(spec, ["echo", "hello"], timeout=30)
    assert (ok.exit_code, ok.stdout) == (0, b"hello\n")
    mixed = driver.exec(spec, ["sh", "-c", "cat; echo oops >&2; exit 3"], 30, b"fed")
    assert (mixed.exit_code, mixed.stdout, mixed.stderr) == (3, b"fed", b"oops\n")

    driver.suspend(spec)
    assert _state(driver, spec) is RuntimeState.SUSPENDED
    driver.resume(spec)
    assert _state(driver, spec) is RuntimeState.RUNNING

    adopted = factory(root)  # as after a daemon restart: nothing kept in memory
    assert _state(adopted, spec) is RuntimeState.RUNNING
    assert adopted.exec(spec, ["true"], timeout=30).exit_code == 0

    driver.stop(spec, force=False, timeout=30)
    assert _state(driver, spec) is RuntimeState.STOPPED

    driver.start(spec, template)
    assert _state(driver, spec) is RuntimeState.RUNNING
    driver.stop(spec, force=True, timeout=0)
    assert _state(driver, spec) is RuntimeState.STOPPED
    stopped = driver.stats(spec)
    assert not stopped.running and stopped.disk_size == spec.resources.disk

    assert not driver.stats_many([spec])[spec.id].running
    assert spec.id not in driver.cpu_times([spec])
    driver.delete(spec)
    assert _state(driver, spec) is RuntimeState.MISSING
    assert not spec.disk_path.exists()


def test_capabilities_are_data_and_the_hooks_match_them(guest: Guest) -> None:
    caps = guest.driver.capabilities()
    hooks = guest.driver.hooks()
    assert caps.kind is guest.driver.kind is guest.spec.kind
    assert caps.snapshots is (hooks.snapshots is not None)
    assert caps.nic_hotplug is (hooks.nics is not None)
    assert guest.driver.hooks() is hooks  # made once, not per call
    assert caps == guest.driver.capabilities()  # data: asking again says the same


def test_a_vm_paused_behind_corrals_back_shows_in_the_batch_read(guest: Guest) -> None:
    """The batch read keeps a VM's state while QEMU sends no event; a pause and a resume
    made over QMP by someone else (not the driver) show at once. (Containers: the same
    behind their back in tests/system/test_lxc_state.py.)"""
    from corral.drivers.qemu.driver import QemuDriver
    from corral.drivers.qemu.qmp import qmp

    if not isinstance(guest.driver, QemuDriver):
        pytest.skip("QEMU's own monitor: VMs only")
    first = guest.driver.statuses([guest.spec])[guest.spec.id]
    assert first.state is RuntimeState.RUNNING
    assert guest.driver.statuses([guest.spec])[guest.spec.id] is first  # kept, not asked
    socket = guest.spec.run_dir / "qmp.sock"
    qmp(socket, "stop")
    try:
        assert guest.driver.statuses([guest.spec])[guest.spec.id].state \
            is RuntimeState.SUSPENDED
    finally:
        qmp(socket, "cont")
    assert guest.driver.statuses([guest.spec])[guest.spec.id].state is RuntimeState.RUNNING


def test_stats_of_a_running_guest(guest: Guest) -> None:
    first = guest.driver.stats(guest.spec)
    assert first.running and first.vcpus == guest.spec.resources.cpus
    assert first.memory_total == guest.spec.resources.memory
    assert first.disk_size == guest.spec.resources.disk and first.disk_used >= 0
    guest.exec("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done")
    second = guest.driver.stats(guest.spec)
    for counter in ("cpu_ns", "io_read_bytes", "io_write_bytes", "io_read_ops",
                    "io_write_ops", "oom_kills"):
        assert getattr(second, counter) >= getattr(first, counter), counter
    if guest.driver.capabilities().guest_os:
        assert second.cpu_ns > first.cpu_ns > 0
        assert second.memory_used > 0 and second.disk_used > 0


def test_resources_set_live_and_read_back(guest: Guest) -> None:
    old = guest.spec.resources
    new = replace(old, memory=96 * MiB, disk=96 * MiB)
    guest.spec = replace(guest.spec, resources=new)  # persisted first, as the service does
    applied = guest.driver.apply_resources(guest.spec, old, new)
    assert {c.key for c in applied.changes} == {"memory", "disk"}
    memory, disk = applied.of("memory"), applied.of("disk")
    assert memory is not None and memory.applied is Applied.LIVE
    assert disk is not None and disk.applied in (Applied.LIVE, Applied.NEXT_START)
    # a VM's balloon reaches its target as the guest gives pages back
    assert _wait_for(lambda: guest.driver.stats(guest.spec).memory_total == 96 * MiB, 60)
    assert guest.driver.stats(guest.spec).disk_size == 96 * MiB  # the image grew now
    same = guest.driver.apply_resources(guest.spec, new, new)
    assert same.changes == ()
    # and back up (a VM's balloon deflates): the guest is left with the memory it booted with
    back = replace(new, memory=old.memory)
    guest.spec = replace(guest.spec, resources=back)
    applied = guest.driver.apply_resources(guest.spec, new, back)
    memory = applied.of("memory")
    assert memory is not None and memory.applied is Applied.LIVE
    assert _wait_for(lambda: guest.driver.stats(guest.spec).memory_total == old.memory, 60)


def _nic(spec: InstanceSpec) -> NicSpec:
    network = NetworkSpec(id=1, name="contract", type=NetworkType.ROUTED,
                          subnets=(ipaddress.ip_network("192.0.2.0/24"),))
    return NicSpec(spec.id, 1, network, "52:54:00:c0:a7:01",
                   (ipaddress.ip_address("192.0.2.10"),))


def _host_has(ifname: str) -> bool:
    return Path("/sys/class/net", ifname).exists()


def test_nic_hot_plug_on_a_running_guest(guest: Guest) -> None:
    caps = guest.driver.capabilities()
    if not caps.nic_hotplug:
        pytest.skip("the driver has no NIC hot-plug")
    hotplug = guest.driver.hooks().nics
    assert hotplug is not None
    nic = _nic(guest.spec)
    try:
        hotplug.attach_nic(guest.spec, nic)
        if caps.guest_os:
            assert _host_has(nic.host_ifname)
            assert guest.exec("cat /sys/class/net/eth1/address").strip() == nic.mac
            assert "inet 192.0.2.10/" in guest.exec("ip -4 addr show dev eth1")
        hotplug.detach_nic(guest.spec, nic)
        assert not _host_has(nic.host_ifname)
        if caps.guest_os:
            assert guest.exec("test -e /sys/class/net/eth1 && echo there || echo gone") \
                == "gone\n"
        hotplug.attach_nic(guest.spec, nic)  # the same NIC again: nothing was left behind
        hotplug.detach_nic(guest.spec, nic)
    finally:
        if _host_has(nic.host_ifname):
            from corral.host.net import NetHost

            NetHost().delete_link(nic.host_ifname)
    assert guest.driver.status(guest.spec).state is RuntimeState.RUNNING


def _digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def test_snapshots_take_and_revert(guest: Guest) -> None:
    caps = guest.driver.capabilities()
    if not caps.snapshots:
        pytest.skip("the driver has no snapshots")
    hooks = guest.driver.hooks().snapshots
    assert hooks is not None
    spec = guest.spec
    if caps.guest_os:
        guest.exec("echo before > /contract-marker; sync")
    disk_only = guest.root / "snap-disk"
    disk_only.mkdir()
    copy = disk_only / "root.img"
    captured = hooks.take(spec, disk_only, False, [DiskCopy(ROOT, spec.disk_path, copy)])
    assert captured.consistency and captured.method
    assert guest.driver.status(spec).state is RuntimeState.RUNNING  # it kept running
    taken = _digest(copy)
    if caps.guest_os:
        guest.exec("echo after > /contract-marker; sync")

    refusal = hooks.memory_refusal(spec)
    if refusal is None:  # with memory: the guest resumes where the snapshot was taken
        with_memory = guest.root / "snap-memory"
        with_memory.mkdir()
        hooks.take(spec, with_memory, True,
                   [DiskCopy(ROOT, spec.disk_path, with_memory / "root.img")])
        hooks.revert(spec, guest.template, with_memory, True,
                     [DiskCopy(ROOT, with_memory / "root.img", spec.disk_path)])
        assert guest.driver.status(spec).state is RuntimeState.RUNNING
        assert guest._answers()
        if caps.guest_os:
            assert guest.exec("cat /contract-marker") == "after\n"
    else:
        assert refusal.strip()  # a reason a user can read

    hooks.revert(spec, guest.template, disk_only, False,
                 [DiskCopy(ROOT, copy, spec.disk_path)])
    assert guest.driver.status(spec).state is RuntimeState.STOPPED
    assert _digest(spec.disk_path) == taken
    guest.boot()
    if caps.guest_os:
        assert guest.exec("cat /contract-marker") == "before\n"
