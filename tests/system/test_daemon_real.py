"""corrald with the real drivers: a container and a VM through the CLI, a daemon kill -9,
re-adoption, and nothing left behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.templates.image import TemplateImage
from tests.integration.conftest import Daemon, start_daemon, stop_and_clean, stop_daemon
from tests.system.fixtures_template import tiny_template

pytestmark = pytest.mark.system
__all__ = ["tiny_template"]


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("lxc-start", "qemu-system-x86_64", "mkfs.ext4"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed on this host"
    return None


@contextlib.contextmanager
def tiny_real_daemon(tiny_template: TemplateImage) -> Iterator[Daemon]:
    """A real-driver corrald with the ``tiny`` template in a fresh state directory (the
    test skips where this host cannot); afterwards its instances are gone and so is the
    directory."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    # Unprivileged containers (host uid 100000) must be able to walk to their disks.
    tmp_path = Path(tempfile.mkdtemp(prefix="corral-system-"))
    tmp_path.chmod(0o711)
    shutil.copytree(tiny_template.directory, tmp_path / "templates" / "tiny")
    daemon = start_daemon(tmp_path, drivers="real")
    try:
        yield daemon
    finally:
        try:
            stop_and_clean(daemon)
        finally:
            shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture
def real_daemon(tiny_template: TemplateImage) -> Iterator[Daemon]:
    with tiny_real_daemon(tiny_template) as daemon:
        yield daemon


def _states(daemon: Daemon) -> dict[str, str]:
    listed = json.loads(daemon.cli("list", "--format", "json", check=True).stdout)
    return {i["name"]: i["state"] for i in listed}


def _console_shows(daemon: Daemon, name: str, text: str) -> None:
    typed = f"echo {text}\n".encode()
    deadline = time.monotonic() + 30
    seen = ""
    while time.monotonic() < deadline:
        seen = daemon.cli("console", name, "--linger", "2", stdin=typed).stdout
        if text in seen.replace(f"echo {text}", ""):
            return
        time.sleep(1)
    raise AssertionError(f"console of {name} never echoed {text!r}: {seen[-500:]!r}")


def test_container_and_vm_through_the_daemon(real_daemon: Daemon) -> None:
    run = real_daemon.cli
    run("create", "web1", "--type", "ct", "--template", "tiny", "--cpus", "1", "--memory",
        "256M", "--disk", "1G", check=True)
    run("create", "db1", "--type", "vm", "--template", "tiny", "--cpus", "2", "--memory",
        "512M", "--disk", "2G", check=True)
    run("start", "web1", "db1", check=True)
    assert _states(real_daemon) == {"web1": "running", "db1": "running"}
    for name in ("web1", "db1"):
        uname = run("exec", name, "--", "uname", "-a")
        assert uname.returncode == 0 and "Linux" in uname.stdout, uname.stderr
    assert run("exec", "db1", "--", "sh", "-c", "exit 5").returncode == 5
    cpus = run("exec", "db1", "--", "grep", "-c", "^processor", "/proc/cpuinfo").stdout
    assert cpus.strip() == "2"
    for name in ("web1", "db1"):
        _console_shows(real_daemon, name, f"console-of-{name}")

    stop_daemon(real_daemon, signal.SIGKILL)
    again = start_daemon(real_daemon.state_dir, drivers="real")
    try:
        assert _states(again) == {"web1": "running", "db1": "running"}
        assert again.cli("exec", "web1", "--", "true").returncode == 0
        assert again.cli("exec", "db1", "--", "true").returncode == 0
        _console_shows(again, "db1", "after-restart")
        again.cli("suspend", "db1", check=True)
        assert _states(again)["db1"] == "suspended"
        again.cli("resume", "db1", check=True)
        again.cli("stop", "web1", "db1", "--timeout", "30", check=True)
        assert _states(again) == {"web1": "stopped", "db1": "stopped"}
        again.cli("delete", "web1", "db1", check=True)
        assert _states(again) == {}
        assert not any((again.state_dir / "instances").iterdir())
    finally:
        stop_daemon(again)


def test_bad_requests_leave_nothing_on_real_drivers(real_daemon: Daemon) -> None:
    run = real_daemon.cli
    no_unit = run("create", "small", "--type", "ct", "--disk", "8")
    assert no_unit.returncode != 0 and "no unit" in no_unit.stderr
    refused = run("create", "x", "--type", "vm", "--template", "nope")
    assert refused.returncode != 0 and "unknown template" in refused.stderr
    assert _states(real_daemon) == {}
    assert not any((real_daemon.state_dir / "instances").glob("*/root.img"))
