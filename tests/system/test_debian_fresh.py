"""A fresh instance of the bundled ``debian-12`` template reports ``running`` (systemd's own
``is-system-running``): no unit of a clean Debian fails because it runs as a container or a VM.

The container case runs in the suite (the bootstrapped tree is cached in CORRAL_BUILD_CACHE,
default /var/tmp/corral-test-build-cache: ~25 s to ~3 min the first time on a host, from the
Debian mirror); the VM case boots systemd under TCG and runs with CORRAL_SLOW_TESTS=1."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.templates.builders.debian import build_debian
from tests.integration.conftest import Daemon, real_daemon_in
from tests.system.test_daemon_real import _skip_reason

pytestmark = [pytest.mark.system]


@pytest.fixture(scope="module")
def debian_daemon() -> Iterator[Daemon]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed on this host")
    os.environ.setdefault("CORRAL_BUILD_CACHE", "/var/tmp/corral-test-build-cache")
    state = Path(tempfile.mkdtemp(prefix="corral-debfresh-"))
    state.chmod(0o711)
    try:
        build_debian(state / "templates" / "debian-12")
    except Exception as exc:  # the mirror out of reach is the host's reason, not a failure
        shutil.rmtree(state, ignore_errors=True)
        if "debootstrap" in str(exc):
            pytest.skip(f"the debian-12 template cannot be built here: {exc}"[:400])
        raise
    with real_daemon_in(state) as daemon:
        yield daemon


def _system_state(d: Daemon, name: str, timeout: float) -> tuple[str, str]:
    """systemd's verdict once it is no longer starting, and the failed units' list."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        try:
            with d.client() as c:
                _, out, _ = c.exec(name, ["systemctl", "is-system-running"], timeout=30)
                state = out.decode().strip()
                if state not in ("", "starting", "initializing", "offline", "unknown"):
                    _, failed, _ = c.exec(name, ["systemctl", "--failed", "--no-legend"],
                                          timeout=30)
                    return state, failed.decode()
        except Exception as exc:
            state = str(exc)
        time.sleep(0.5)
    raise AssertionError(f"{name}: systemd still says {state!r} after {timeout:.0f} s")


def _fresh_reports_running(d: Daemon, kind: str, timeout: float) -> None:
    name = f"fresh-{kind}"
    d.cli("create", name, "--type", kind, "--template", "debian-12", "--memory", "512M",
          check=True)
    try:
        d.cli("start", name, check=True)
        state, failed = _system_state(d, name, timeout)
        assert state == "running", f"{name}: {state}; failed units:\n{failed}"
        listed = d.cli("info", name, "--format", "json", check=True).stdout
        assert '"state": "running"' in listed
    finally:
        d.cli("delete", "--force", name)


def test_fresh_debian_container_reports_running(debian_daemon: Daemon) -> None:
    _fresh_reports_running(debian_daemon, "ct", 60)


@pytest.mark.skipif(os.environ.get("CORRAL_SLOW_TESTS") != "1",
                    reason="slow (a Debian VM with systemd under TCG): CORRAL_SLOW_TESTS=1")
def test_fresh_debian_vm_reports_running(debian_daemon: Daemon) -> None:
    _fresh_reports_running(debian_daemon, "vm", 300)
