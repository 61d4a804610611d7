"""The debian-12-nginx appliance, built for real (debootstrap + apt-get in a chroot) and
booted as a container and as a VM on a bridge in a network namespace the test makes; the
page is fetched from that namespace. Slow (debootstrap ~25 s+, a systemd VM under TCG):
runs with CORRAL_SLOW_TESTS=1. The bootstrapped tree is cached in CORRAL_BUILD_CACHE
(default /var/tmp/corral-test-build-cache) across runs."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.templates.builders.debian import build_debian_nginx
from tests.integration.conftest import Daemon, start_daemon, stop_and_clean
from tests.system.net.lab import can_run, in_ns, sh
from tests.system.net.test_guest_nics import _in_netns
from tests.system.test_daemon_real import _skip_reason

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.environ.get("CORRAL_SLOW_TESTS") != "1",
                       reason="slow (debootstrap + a Debian VM under TCG): CORRAL_SLOW_TESTS=1"),
]
CT_IP, VM_IP, HOST_IP = "10.78.0.2", "10.78.0.3", "10.78.0.200"
PAGE = b"Hello from Corral nginx"


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[Daemon, str]]:
    reason = _skip_reason() or can_run()
    if reason:
        pytest.skip(reason)
    os.environ.setdefault("CORRAL_BUILD_CACHE", "/var/tmp/corral-test-build-cache")
    netns = f"crltest-deb-{secrets.token_hex(3)}"
    sh("ip", "netns", "add", netns)
    in_ns(netns, "ip", "link", "set", "lo", "up")
    state = Path(tempfile.mkdtemp(prefix="corral-debian-"))
    state.chmod(0o711)
    started = time.monotonic()
    build_debian_nginx(state / "templates" / "debian-12-nginx",
                       lambda f, p: print(f"{time.monotonic() - started:6.1f} s {p}"))
    print(f"debian-12-nginx built in {time.monotonic() - started:.1f} s")
    daemon = start_daemon(state, drivers="real", prefix=_in_netns(netns))
    try:
        yield daemon, netns
    finally:
        try:
            stop_and_clean(daemon, _in_netns(netns))
        finally:
            sh("ip", "netns", "del", netns, check=False)
            shutil.rmtree(state, ignore_errors=True)


def _fetch(netns: str, ip: str, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            return _http_get(netns, ip)
        except Exception as exc:
            last = str(exc)
        time.sleep(1)
    raise AssertionError(f"no page from {ip} within {timeout:.0f} s: {last}")


def _http_get(netns: str, ip: str) -> bytes:
    code = ("import socket,sys;s=socket.create_connection((sys.argv[1],80),3);"
            "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n');d=b''\n"
            "while (c:=s.recv(65536)): d+=c\nsys.stdout.write(d.decode())")
    return in_ns(netns, "python3", "-c", code, ip).encode()


def test_nginx_appliance_serves_its_page_as_ct_and_as_vm(site: tuple[Daemon, str]) -> None:
    d, netns = site
    for args in (("network", "create", "lan", "--type", "bridged", "--subnet", "10.78.0.0/24"),
                 ("create", "web-vm", "--type", "vm", "--template", "debian-12-nginx",
                  "--memory", "512M"),
                 ("create", "web-ct", "--type", "ct", "--template", "debian-12-nginx"),
                 ("nic", "add", "web-ct", "--network", "lan", "--ip", CT_IP),
                 ("nic", "add", "web-vm", "--network", "lan", "--ip", VM_IP)):
        d.cli(*args, check=True)
    bridge = json.loads(d.cli("network", "list", "-f", "json", check=True).stdout)[0]["bridge"]
    in_ns(netns, "ip", "addr", "add", f"{HOST_IP}/24", "dev", bridge)
    started = time.monotonic()
    d.cli("start", "web-ct", check=True)
    assert PAGE in _fetch(netns, CT_IP, 60)
    print(f"CT: start -> page {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    d.cli("start", "web-vm", check=True)
    assert PAGE in _fetch(netns, VM_IP, 300)
    print(f"VM: start -> page {time.monotonic() - started:.1f} s")
    with d.client() as c:
        code, out, _ = c.exec("web-vm", ["sh", "-c", "systemctl is-active nginx"], timeout=30)
    assert (code, out.strip()) == (0, b"active")
