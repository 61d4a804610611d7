"""The contract every driver passes: fake (both kinds), lxc and qemu, the same assertions.

Real drivers are skipped with the machine's own reason where the host cannot run them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.drivers.base import Driver, RuntimeState
from corral.templates.image import TemplateImage

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


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest, template: TemplateImage,
         ) -> Iterator[tuple[Driver, InstanceSpec, TemplateImage, DriverFactory, Path]]:
    factory, kind, tool = request.param
    if tool is not None:
        reason = _unavailable(tool)
        if reason:
            pytest.skip(reason)
        if not template.kernel.exists():
            pytest.skip("the tiny template could not be built here (no busybox or kernel)")
    # Unprivileged containers (host uid 100000) must be able to walk to their disk image,
    # and pytest's tmp_path sits below a 0700 directory.
    root = Path(tempfile.mkdtemp(prefix="corral-contract-"))
    root.chmod(0o711)
    driver = factory(root)
    name = f"contract-{kind.value}-{os.getpid() % 10000}"
    spec = InstanceSpec(
        id=900, name=name, kind=kind, template=template.name,
        resources=Resources(cpus=1, memory=128 * 1024**2, disk=64 * 1024**2),
        directory=root / "instance",
    )
    spec.directory.mkdir()
    try:
        yield driver, spec, template, factory, root
    finally:
        status = driver.status(spec).state
        if status in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
            driver.stop(spec, force=True, timeout=0)
        if driver.status(spec).state is not RuntimeState.MISSING:
            driver.delete(spec)
        shutil.rmtree(root, ignore_errors=True)


def _wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_driver_contract(
    case: tuple[Driver, InstanceSpec, TemplateImage, DriverFactory, Path],
) -> None:
    driver, spec, template, factory, root = case
    assert driver.capabilities().kind is driver.kind is spec.kind
    assert driver.status(spec).state is RuntimeState.MISSING

    driver.create(spec, template, lambda fraction, phase: None)
    assert driver.status(spec).state is RuntimeState.STOPPED
    assert spec.disk_path.exists()

    driver.start(spec, template)
    status = driver.status(spec)
    assert status.state is RuntimeState.RUNNING and status.pid
    assert _wait_for(lambda: b"corral-guest-ready" in driver.console_log(spec), 60)

    ok = driver.exec(spec, ["echo", "hello"], timeout=30)
    assert (ok.exit_code, ok.stdout) == (0, b"hello\n")
    mixed = driver.exec(spec, ["sh", "-c", "cat; echo oops >&2; exit 3"], 30, b"fed")
    assert (mixed.exit_code, mixed.stdout, mixed.stderr) == (3, b"fed", b"oops\n")

    driver.suspend(spec)
    assert driver.status(spec).state is RuntimeState.SUSPENDED
    driver.resume(spec)
    assert driver.status(spec).state is RuntimeState.RUNNING

    adopted = factory(root)  # as after a daemon restart: nothing kept in memory
    assert adopted.status(spec).state is RuntimeState.RUNNING
    assert adopted.exec(spec, ["true"], timeout=30).exit_code == 0

    driver.stop(spec, force=False, timeout=30)
    assert driver.status(spec).state is RuntimeState.STOPPED

    driver.start(spec, template)
    assert driver.status(spec).state is RuntimeState.RUNNING
    driver.stop(spec, force=True, timeout=0)
    assert driver.status(spec).state is RuntimeState.STOPPED

    driver.delete(spec)
    assert driver.status(spec).state is RuntimeState.MISSING
    assert not spec.disk_path.exists()
