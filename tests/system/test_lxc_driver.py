"""The LXC driver against real LXC: the tiny template as an unprivileged container."""

from __future__ import annotations

import dataclasses
import os
import secrets
import select
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from corral.domain.errors import Conflict, InvalidInput, Unsupported
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.drivers.base import RuntimeState
from corral.drivers.lxc import LxcDriver
from corral.drivers.lxc.config import cgroup_dirs
from corral.drivers.lxc.driver import lxc_name, wait_for_console
from corral.host.cgroups import CgroupVersion, read_layout
from corral.host.idmap import ensure_root_range
from corral.templates.image import TemplateImage
from tests.system.fixtures_template import tiny_template

__all__ = ["tiny_template"]  # a fixture, found by pytest through this module's namespace


def _why_not() -> str:
    if shutil.which("lxc-start") is None:
        return "lxc-start is not installed (Debian package lxc)"
    if os.geteuid() != 0:
        return "LXC containers need root here"
    return ""


pytestmark = [pytest.mark.system, pytest.mark.skipif(bool(_why_not()), reason=_why_not())]

READY = b"corral-guest-ready"
STOPPING = b"corral-guest-stopping"
MiB = 1024**2


def _no_progress(fraction: float, phase: str) -> None:
    del fraction, phase


@dataclass
class Env:
    driver: LxcDriver
    template: TemplateImage
    root: Path

    def spec(self, name: str, *, privileged: bool = False, disk: int = 64 * MiB) -> InstanceSpec:
        # Random ids: the cgroup path corral/ct/<id> is host-wide, other sessions may run.
        ident = 500000 + secrets.randbelow(400000)
        return InstanceSpec(
            id=ident,
            name=name,
            kind=Kind.CT,
            template=self.template.name,
            resources=Resources(memory=96 * MiB, disk=disk),
            directory=self.root / "instances" / str(ident),
            privileged=privileged,
        )


@pytest.fixture(scope="module")
def env(tiny_template: TemplateImage) -> Iterator[Env]:
    ensure_root_range()  # host setup step: root:100000:65536 unless root has a range
    # Not under pytest's basetemp (mode 0700): a container's root (uid 100000) must be able
    # to walk to its disk image, as it must under /var/lib/corral.
    root = Path(tempfile.mkdtemp(prefix="corral-lxc-test-"))
    root.chmod(0o711)
    try:
        yield Env(LxcDriver(root / "lxc"), tiny_template, root)
    finally:
        shutil.rmtree(root)


def leftovers(env: Env, spec: InstanceSpec) -> list[str]:
    """Everything of ``spec`` still on the host: files, loop devices, mounts, cgroups."""
    found: list[str] = []
    for path in (env.driver.lxcpath / lxc_name(spec), spec.disk_path, spec.directory):
        if path.exists():
            found.append(f"path {path}")
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        if str(spec.disk_path) in backing.read_text():
            found.append(f"loop device {backing.parent.parent.name}")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if str(spec.directory) in line or str(spec.disk_path) in line:
            found.append(f"mount {line}")
    layout = read_layout()
    hierarchies = list(dict.fromkeys(layout.v1.values()))
    if layout.v2_mount is not None:
        hierarchies.append(layout.v2_mount)
    dirs = cgroup_dirs(lxc_name(spec))
    for hierarchy in hierarchies:
        for key in ("container", "monitor"):
            if (hierarchy / dirs[key]).exists():
                found.append(f"cgroup {hierarchy / dirs[key]}")
    if env.driver.status(spec).state != RuntimeState.MISSING:
        found.append("LXC still knows the container")
    return found


def _start_until_ready(env: Env, spec: InstanceSpec) -> float:
    began = time.monotonic()
    env.driver.start(spec, env.template)
    assert wait_for_console(spec, env.driver, READY, 10), env.driver.console_log(spec)
    return time.monotonic() - began


@dataclass
class Running:
    spec: InstanceSpec
    ready_after: float


@pytest.fixture(scope="module")
def running(env: Env) -> Iterator[Running]:
    spec = env.spec("web1")
    env.driver.create(spec, env.template, _no_progress)
    try:
        ready_after = _start_until_ready(env, spec)
        print(f"\nlxc start -> ready marker: {ready_after * 1000:.0f} ms")
        yield Running(spec, ready_after)
    finally:
        env.driver.stop(spec, force=True, timeout=5)
        env.driver.delete(spec)
    assert leftovers(env, spec) == []


def test_ready_marker_and_hostname_on_console(running: Running, env: Env) -> None:
    log = env.driver.console_log(running.spec)
    assert b"corral-guest-ready web1" in log
    assert running.ready_after < 5
    # the guest's shell may still be printing after the marker: the tail is compared with
    # the whole log read just before and just after it, once those two agree
    for _ in range(50):
        before = env.driver.console_log(running.spec)
        tail = env.driver.console_log(running.spec, limit=10)
        if env.driver.console_log(running.spec) == before:
            break
        time.sleep(0.1)
    assert tail == before[-10:]


def test_unprivileged_by_default(running: Running, env: Env) -> None:
    status = env.driver.status(running.spec)
    assert status.state == RuntimeState.RUNNING and status.pid is not None
    uid_map = Path(f"/proc/{status.pid}/uid_map").read_text().split()
    gid_map = Path(f"/proc/{status.pid}/gid_map").read_text().split()
    assert uid_map == ["0", "100000", "65536"]
    assert gid_map == ["0", "100000", "65536"]
    assert os.stat(f"/proc/{status.pid}").st_uid == 100000
    inside = env.driver.exec(running.spec, ["id", "-u"], 10)
    assert inside.stdout == b"0\n"
    assert env.driver.capabilities().unprivileged


def test_root_directory_belongs_to_root_inside(running: Running, env: Env) -> None:
    listing = env.driver.exec(running.spec, ["ls", "-lnd", "/", "/bin", "/etc"], 10)
    owners = [line.split()[2:4] for line in listing.stdout.decode().splitlines()]
    assert owners == [["0", "0"]] * 3, listing.stdout
    touch = env.driver.exec(running.spec, ["touch", "/created-by-root"], 10)
    assert touch.exit_code == 0, touch.stderr


def test_exec_uname(running: Running, env: Env) -> None:
    env.driver.exec(running.spec, ["true"], 10)
    began = time.monotonic()
    result = env.driver.exec(running.spec, ["uname", "-a"], 10)
    took = time.monotonic() - began
    print(f"\nexec round-trip: {took * 1000:.0f} ms")
    assert result.exit_code == 0
    assert result.stdout.startswith(b"Linux web1 ")
    assert result.stderr == b""


def test_exec_failing_command_with_stdin(running: Running, env: Env) -> None:
    script = "read line; echo got:$line; echo bad >&2; exit 7"
    result = env.driver.exec(running.spec, ["sh", "-c", script], 10, stdin=b"abc\n")
    assert result.exit_code == 7
    assert result.stdout == b"got:abc\n"
    assert result.stderr == b"bad\n"


def test_exec_has_a_clean_environment(running: Running, env: Env) -> None:
    os.environ["CORRAL_TEST_LEAK"] = "1"
    try:
        result = env.driver.exec(running.spec, ["env"], 10)
    finally:
        del os.environ["CORRAL_TEST_LEAK"]
    assert b"CORRAL_TEST_LEAK" not in result.stdout
    assert b"PATH=/usr/local/sbin:" in result.stdout


def test_exec_timeout_kills_what_it_started(running: Running, env: Env) -> None:
    began = time.monotonic()
    result = env.driver.exec(running.spec, ["sh", "-c", "echo started; sleep 61"], 0.5)
    assert time.monotonic() - began < 5
    assert result.exit_code == 137
    assert result.stdout == b"started\n"
    time.sleep(0.2)
    left = env.driver.exec(running.spec, ["ps"], 10)
    assert b"sleep 61" not in left.stdout


def test_console_is_interactive(running: Running, env: Env) -> None:
    console = env.driver.open_console(running.spec)
    try:
        console.write(b"\recho hel''lo-$((6*7))\r")
        seen = b""
        deadline = time.monotonic() + 5
        while b"hello-42" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([console], [], [], 0.2)
            if ready:
                seen += console.read(4096)
        assert b"hello-42" in seen
    finally:
        console.close()
    assert b"hello-42" in env.driver.console_log(running.spec)


def test_memory_limit_is_in_the_containers_cgroup(running: Running, env: Env) -> None:
    layout = read_layout()
    where = cgroup_dirs(lxc_name(running.spec))["container"]
    version = layout.controller_version("memory")
    if version == CgroupVersion.V1:
        limit = layout.v1["memory"] / where / "memory.limit_in_bytes"
    elif version == CgroupVersion.V2 and layout.v2_mount is not None:
        limit = layout.v2_mount / where / "memory.max"
    else:
        pytest.skip("this host has no memory cgroup controller")
    assert int(limit.read_text()) == running.spec.resources.memory


def test_disk_size_is_a_hard_quota(running: Running, env: Env) -> None:
    fill = ["dd", "if=/dev/zero", "of=/root/fill", "bs=1M", "count=100"]
    result = env.driver.exec(running.spec, fill, 60)
    try:
        assert result.exit_code != 0
        assert b"No space left on device" in result.stderr
    finally:
        env.driver.exec(running.spec, ["rm", "-f", "/root/fill"], 10)


def test_suspend_and_resume(running: Running, env: Env) -> None:
    env.driver.suspend(running.spec)
    try:
        assert env.driver.status(running.spec).state == RuntimeState.SUSPENDED
        with pytest.raises(Conflict):
            env.driver.exec(running.spec, ["true"], 5)
    finally:
        env.driver.resume(running.spec)
    assert env.driver.status(running.spec).state == RuntimeState.RUNNING
    assert env.driver.exec(running.spec, ["true"], 10).exit_code == 0


def test_a_fresh_driver_readopts_the_running_container(running: Running, env: Env) -> None:
    before = env.driver.status(running.spec)
    fresh = LxcDriver(env.driver.lxcpath)  # as after a daemon restart: no memory of anything
    after = fresh.status(running.spec)
    assert after.state == RuntimeState.RUNNING
    assert after.pid == before.pid
    assert fresh.exec(running.spec, ["echo", "hi"], 10).stdout == b"hi\n"


def test_delete_refuses_a_running_container(running: Running, env: Env) -> None:
    with pytest.raises(Conflict):
        env.driver.delete(running.spec)
    assert env.driver.status(running.spec).state == RuntimeState.RUNNING


def test_graceful_stop_force_stop_and_delete_leave_nothing(env: Env) -> None:
    spec = env.spec("stopper")
    env.driver.create(spec, env.template, _no_progress)
    try:
        _start_until_ready(env, spec)
        began = time.monotonic()
        env.driver.stop(spec, force=False, timeout=10)
        graceful = time.monotonic() - began
        print(f"\ngraceful stop: {graceful * 1000:.0f} ms")
        assert graceful < 10
        assert env.driver.status(spec).state == RuntimeState.STOPPED
        assert env.driver.console_log(spec).count(STOPPING) == 1  # the guest ran its rcK

        _start_until_ready(env, spec)
        env.driver.suspend(spec)
        began = time.monotonic()
        env.driver.stop(spec, force=True, timeout=10)
        assert time.monotonic() - began < 3
        assert env.driver.status(spec).state == RuntimeState.STOPPED
        assert env.driver.console_log(spec).count(STOPPING) == 1  # killed, no shutdown
    finally:
        env.driver.stop(spec, force=True, timeout=5)
        env.driver.delete(spec)
    assert leftovers(env, spec) == []


def test_graceful_stop_kills_after_the_timeout_when_init_ignores_the_signal(env: Env) -> None:
    metadata = {**env.template.metadata, "ct": {"halt_signal": "SIGWINCH"}}
    deaf = dataclasses.replace(env.template, metadata=metadata)
    spec = env.spec("deaf")
    env.driver.create(spec, deaf, _no_progress)
    try:
        _start_until_ready(env, spec)
        began = time.monotonic()
        env.driver.stop(spec, force=False, timeout=2)
        took = time.monotonic() - began
        assert 1.5 < took < 6
        assert env.driver.status(spec).state == RuntimeState.STOPPED
        assert STOPPING not in env.driver.console_log(spec)
    finally:
        env.driver.stop(spec, force=True, timeout=5)
        env.driver.delete(spec)
    assert leftovers(env, spec) == []


def test_privileged_container_maps_no_ids(env: Env) -> None:
    spec = env.spec("priv", privileged=True)
    env.driver.create(spec, env.template, _no_progress)
    try:
        _start_until_ready(env, spec)
        pid = env.driver.status(spec).pid
        assert Path(f"/proc/{pid}/uid_map").read_text().split() == ["0", "0", "4294967295"]
        assert env.driver.exec(spec, ["id", "-u"], 10).stdout == b"0\n"
    finally:
        env.driver.stop(spec, force=True, timeout=5)
        env.driver.delete(spec)
    assert leftovers(env, spec) == []


def test_failed_create_leaves_nothing(env: Env) -> None:
    spec = env.spec("small", disk=8 * MiB)
    with pytest.raises(InvalidInput):
        env.driver.create(spec, env.template, _no_progress)
    assert leftovers(env, spec) == []


def test_unreachable_state_directory_is_refused_clearly(
    env: Env, tmp_path_factory: pytest.TempPathFactory
) -> None:
    hidden = tmp_path_factory.mktemp("hidden")
    hidden.parent.chmod(0o700)
    spec = dataclasses.replace(env.spec("hidden"), directory=hidden / "instance")
    with pytest.raises(Unsupported, match="not searchable by others"):
        env.driver.create(spec, env.template, _no_progress)
    assert leftovers(env, spec) == []
