"""Real guests on Corral networks, through corrald and the CLI: a container and VMs (tiny
template) on one bridge, a routed NIC, anti-spoofing from inside the guests, accounting of
guest traffic per class, and NIC hot-plug on running guests.

The daemon runs inside a network namespace the test makes (``nsenter --net``: only the
network namespace, so cgroups and mounts stay the host's), so every bridge, tap, veth, route
and nftables table it creates lives there and goes away with it; no packet reaches the real
host's network.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from corral.templates.image import TemplateImage
from tests.integration.conftest import Daemon, start_daemon, stop_and_clean
from tests.system.fixtures_template import install_templates, tiny_template
from tests.system.net.lab import TRAFFIC, can_run, in_ns, sh
from tests.system.test_daemon_real import _skip_reason

pytestmark = pytest.mark.system
__all__ = ["tiny_template"]

CT_IP, VM_IP, HOST_IP = "10.77.0.2", "10.77.0.3", "10.77.0.200"
ROUTED_IP = "192.0.2.10"


@dataclass
class Site:
    daemon: Daemon
    netns: str

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.daemon.cli(*args)

    def ok(self, *args: str) -> str:
        proc = self.daemon.cli(*args)
        assert proc.returncode == 0, f"corral {' '.join(args)}: {proc.stderr}{proc.stdout}"
        return proc.stdout

    def guest(self, name: str, command: str) -> subprocess.CompletedProcess[str]:
        return self.daemon.cli("exec", name, "--", "sh", "-c", command)

    def pings(self, name: str, address: str, extra: str = "") -> bool:
        return self.guest(name, f"ping -c 2 -w 6 {extra} {address}").returncode == 0

    def nics(self, name: str) -> list[dict[str, object]]:
        found: list[dict[str, object]] = json.loads(self.ok("nic", "list", name, "-f", "json"))
        return found

    def links(self) -> set[str]:
        data = json.loads(in_ns(self.netns, "ip", "-j", "link", "show"))
        return {link["ifname"] for link in data}

    def traffic(self, name: str) -> dict[tuple[str, str], int]:
        rows = json.loads(self.ok("netstat", name, "-f", "json"))
        return {(r["traffic_class"], r["direction"]): int(r["bytes"]) for r in rows}


def _wait_ready(site: Site, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if site.run("exec", name, "--", "true").returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"{name} never answered exec")


# LXC checks a bridge through /sys/class/net, and sysfs shows the network namespace of whoever
# mounted it: the daemon gets its own mount namespace with a sysfs of its network namespace,
# and the host's cgroup hierarchies moved back under it (cgroups are the host's).
_OWN_SYSFS = """set -e
keep=$(mktemp -d /run/corral-test-cgroup.XXXXXX)
mount --rbind /sys/fs/cgroup "$keep"
mount -t sysfs sysfs /sys
mount --move "$keep" /sys/fs/cgroup
rmdir "$keep"
exec "$@"
"""


def _in_netns(netns: str) -> tuple[str, ...]:
    return ("nsenter", f"--net=/run/netns/{netns}", "unshare", "--mount", "--propagation",
            "slave", "sh", "-c", _OWN_SYSFS, "sh")


@pytest.fixture(scope="module")
def site(tiny_template: TemplateImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    reason = _skip_reason() or can_run()
    if reason:
        pytest.skip(reason)
    netns = f"crltest-gn-{secrets.token_hex(3)}"
    sh("ip", "netns", "add", netns)
    in_ns(netns, "ip", "link", "set", "lo", "up")
    state = Path(tempfile.mkdtemp(prefix="corral-guestnet-"))
    state.chmod(0o711)  # unprivileged containers (host uid 100000) walk to their disks
    install_templates(state, tiny_template, tmp_path_factory.mktemp("template-q35"))
    prefix = _in_netns(netns)
    daemon = start_daemon(state, drivers="real", prefix=prefix)
    try:
        yield Site(daemon, netns)
    finally:
        try:
            stop_and_clean(daemon, prefix)
        finally:
            sh("ip", "netns", "del", netns, check=False)
            shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def lan(site: Site) -> Site:
    """ct1 (container) and vm1 (microvm) on bridged network 'lan'; the namespace itself holds
    10.77.0.200 on the bridge as a far peer."""
    site.ok("network", "create", "lan", "--type", "bridged", "--subnet", "10.77.0.0/24")
    site.ok("network", "class", "set", "near=10.77.0.0/25")
    site.ok("network", "class", "set", "far=10.77.0.128/25")
    bridge = next(n["bridge"] for n in json.loads(site.ok("network", "list", "-f", "json")))
    in_ns(site.netns, "ip", "addr", "add", f"{HOST_IP}/24", "dev", bridge)
    # The VM first: LXC cgroups are keyed by instance id (corral/ct/<id>), and another
    # corrald on this host may run a container with the first id, 101.
    site.ok("create", "vm1", "--type", "vm", "--template", "tiny", "--memory", "160M",
            "--disk", "256M")
    site.ok("create", "ct1", "--type", "ct", "--template", "tiny", "--memory", "128M",
            "--disk", "256M")
    site.ok("nic", "add", "ct1", "--network", "lan", "--ip", CT_IP)
    site.ok("nic", "add", "vm1", "--network", "lan", "--ip", VM_IP)
    site.ok("start", "ct1", "vm1")
    _wait_ready(site, "vm1")
    return site


def test_container_and_vm_ping_each_other_over_the_bridge(lan: Site) -> None:
    vm_nic = lan.nics("vm1")[0]
    shown = lan.guest("vm1", "ip addr show dev eth0").stdout
    assert f"{VM_IP}/24" in shown and str(vm_nic["mac"]) in shown, shown
    assert lan.pings("ct1", VM_IP)
    assert lan.pings("vm1", CT_IP)
    assert str(vm_nic["host_device"]) in lan.links()  # the VM's tap, c<id>n0


def test_spoofed_source_address_is_dropped_from_a_container(lan: Site) -> None:
    lan.guest("ct1", "ip addr add 10.77.0.99/24 dev eth0")
    try:
        assert not lan.pings("ct1", VM_IP, "-I 10.77.0.99")
        assert lan.pings("ct1", VM_IP)
    finally:
        lan.guest("ct1", "ip addr del 10.77.0.99/24 dev eth0")


def test_spoofed_source_address_is_dropped_from_a_vm(lan: Site) -> None:
    lan.guest("vm1", "ip addr add 10.77.0.98/24 dev eth0")
    try:
        assert not lan.pings("vm1", CT_IP, "-I 10.77.0.98")
        assert lan.pings("vm1", CT_IP)
    finally:
        lan.guest("vm1", "ip addr del 10.77.0.98/24 dev eth0")


@pytest.mark.parametrize("name", ["ct1", "vm1"])
def test_changed_mac_is_dropped(lan: Site, name: str) -> None:
    real = str(lan.nics(name)[0]["mac"])
    other = "vm1" if name == "ct1" else "ct1"
    target = VM_IP if name == "ct1" else CT_IP
    flush = "ip neigh flush dev eth0"
    set_mac = "ip link set dev eth0 down; ip link set dev eth0 address {}; ip link set dev eth0 up"
    lan.guest(name, set_mac.format("02:00:00:00:00:99"))
    try:
        lan.guest(other, flush)
        lan.guest(name, flush)
        assert not lan.pings(name, target)  # its ARP and IP leave with a foreign MAC
    finally:
        lan.guest(name, set_mac.format(real))
    lan.guest(other, flush)
    assert lan.pings(name, target)


def test_accounting_counts_guest_traffic_per_class(lan: Site) -> None:
    before = lan.traffic("vm1")
    ct_before = lan.traffic("ct1")
    assert lan.guest("vm1", f"ping -c 10 -s 1000 {CT_IP}").returncode == 0
    assert lan.guest("vm1", f"ping -c 5 -s 500 {HOST_IP}").returncode == 0
    after = lan.traffic("vm1")
    ct_after = lan.traffic("ct1")

    def delta(rows_after: dict[tuple[str, str], int], rows_before: dict[tuple[str, str], int],
              key: tuple[str, str]) -> int:
        return rows_after.get(key, 0) - rows_before.get(key, 0)

    near, far = 10 * (1000 + 8 + 20), 5 * (500 + 8 + 20)  # ICMP echo, IPv4 header: L3 bytes
    assert delta(after, before, ("near", "out")) == near
    assert delta(after, before, ("near", "in")) == near
    assert delta(after, before, ("far", "out")) == far
    assert delta(after, before, ("far", "in")) == far
    assert delta(ct_after, ct_before, ("near", "in")) == near
    assert delta(ct_after, ct_before, ("near", "out")) == near


BLOB = 3_000_000  # 3 s at 8 Mbit/s


def _timed(site: Site, name: str, command: str) -> float:
    """Bits per second of moving BLOB bytes with ``command`` inside the container ``name``,
    timed by the kernel's clock there (``/proc/uptime``: a container shares the host's kernel;
    a VM's own clock may lag under TCG)."""
    proc = site.guest(name, "a=$(cut -d' ' -f1 /proc/uptime); "
                            f"{command} && b=$(cut -d' ' -f1 /proc/uptime) && echo $a $b")
    assert proc.returncode == 0, proc.stderr
    started, ended = (float(x) for x in proc.stdout.split())
    return BLOB * 8 / (ended - started)


def _download(site: Site, url: str) -> float:
    return _timed(site, "ct1", f"wget -q -O /dev/null {url}")


def _upload_to_vm(site: Site, port: int) -> float:
    listen = f"sh -c 'sleep 60 | nc -l -p {port} >/dev/null' </dev/null >/dev/null 2>&1 &"
    assert site.guest("vm1", listen).returncode == 0
    return _timed(site, "ct1", f"for i in 1 2 3 4 5 6; do nc {VM_IP} {port} </tmp/blob && "
                               "break; sleep 0.5; done")


def test_bandwidth_maximum_holds_between_a_vm_a_container_and_the_host(lan: Site) -> None:
    """The VM's tap and the container's veth are held to their class's maximum for traffic
    that never leaves the bridge (VM <-> container, both ways) and for host -> container."""
    ceil = 8 * 10**6
    make = f"dd if=/dev/zero of=/tmp/blob bs=1000 count={BLOB // 1000} 2>/dev/null"
    for name in ("vm1", "ct1"):
        assert lan.guest(name, f"{make} && httpd -p 8080 -h /tmp").returncode == 0
    site_dir = Path(tempfile.mkdtemp(prefix="corral-blob-"))
    (site_dir / "blob").write_bytes(bytes(BLOB))
    host_httpd = subprocess.Popen(["ip", "netns", "exec", lan.netns, "busybox", "httpd", "-f",
                                   "-p", "8081", "-h", str(site_dir)])
    try:
        free = _download(lan, f"http://{VM_IP}:8080/blob")
        lan.ok("bandwidth", "set", "vm1", "--class", "near", "--rate", "2mbit", "--ceil",
               "8mbit")
        lan.ok("bandwidth", "set", "ct1", "--class", "far", "--rate", "2mbit", "--ceil",
               "8mbit", "--direction", "in")
        rates = {"VM -> CT": _download(lan, f"http://{VM_IP}:8080/blob"),
                 "CT -> VM": _upload_to_vm(lan, 9000),
                 "host -> CT": _download(lan, f"http://{HOST_IP}:8081/blob")}
        print(f"\nceil 8 Mbit/s: unshaped VM -> CT {free / 1e6:.1f}; "
              + ", ".join(f"{k} {v / 1e6:.2f}" for k, v in rates.items()) + " Mbit/s")
        assert free > 2 * ceil  # the path itself is faster than the maximum
        for path, rate in rates.items():
            assert 0.3 * ceil <= rate <= 1.3 * ceil, path
    finally:
        host_httpd.terminate()
        host_httpd.wait(timeout=10)
        shutil.rmtree(site_dir, ignore_errors=True)
        lan.run("bandwidth", "clear", "vm1")
        lan.run("bandwidth", "clear", "ct1")
        for name in ("vm1", "ct1"):
            lan.guest(name, "killall httpd nc sleep; rm -f /tmp/blob")


def test_hot_added_routed_nic_reaches_a_running_container(lan: Site) -> None:
    lan.ok("network", "create", "rt", "--type", "routed")
    try:
        started = time.monotonic()
        lan.ok("nic", "add", "ct1", "--network", "rt", "--ip", ROUTED_IP)
        print(f"CT hot-add (routed) through the CLI: {time.monotonic() - started:.2f} s")
        nic = next(n for n in lan.nics("ct1") if n["network"] == "rt")
        assert f"{ROUTED_IP}/32" in lan.guest("ct1", "ip addr show dev eth1").stdout
        assert _host_pings(lan, ROUTED_IP)
        lan.ok("nic", "remove", "ct1", "1")
        assert str(nic["host_device"]) not in lan.links()
        assert lan.guest("ct1", "ip link show dev eth1").returncode != 0
        assert not _host_pings(lan, ROUTED_IP)
    finally:
        if any(n["network"] == "rt" for n in lan.nics("ct1")):
            lan.run("nic", "remove", "ct1", "1")
        lan.run("network", "delete", "rt")


def _host_pings(site: Site, address: str) -> bool:
    """ICMP echo from the namespace (the daemon's "host") itself."""
    proc = subprocess.run(["ip", "netns", "exec", site.netns, sys.executable, TRAFFIC, "ping",
                           address, "2", "3"], capture_output=True, check=False, timeout=30)
    return proc.returncode == 0


def test_vhost_net_is_reported_as_the_host_has_it(site: Site) -> None:
    features = json.loads(site.ok("host", "info", "--format", "json"))["features"]
    assert features["vhost_net"]["available"] is Path("/dev/vhost-net").exists()


def test_hot_add_on_a_microvm_is_refused_and_leaves_nothing(lan: Site) -> None:
    links = lan.links()
    refused = lan.run("nic", "add", "vm1", "--network", "lan", "--ip", "10.77.0.9")
    assert refused.returncode != 0
    assert "microvm" in refused.stderr and "hot-plug" in refused.stderr, refused.stderr
    assert len(lan.nics("vm1")) == 1
    assert lan.links() == links


def test_hot_add_and_remove_on_a_running_q35_vm(lan: Site) -> None:
    lan.ok("create", "vmq", "--type", "vm", "--template", "tinyq35", "--memory", "160M",
           "--disk", "256M")
    try:
        lan.ok("start", "vmq")
        _wait_ready(lan, "vmq")
        lan.ok("suspend", "vmq")
        paused = lan.run("nic", "add", "vmq", "--network", "lan", "--ip", "10.77.0.5")
        assert paused.returncode != 0 and "paused" in paused.stderr, paused.stderr
        assert lan.nics("vmq") == []
        lan.ok("resume", "vmq")
        started = time.monotonic()
        lan.ok("nic", "add", "vmq", "--network", "lan", "--ip", "10.77.0.5")
        took = time.monotonic() - started
        print(f"q35 hot-add incl. guest configuration: {took:.2f} s")
        assert "10.77.0.5/24" in lan.guest("vmq", "ip addr show dev eth0").stdout
        assert lan.pings("vmq", CT_IP)
        assert lan.pings("ct1", "10.77.0.5")
        tap = str(lan.nics("vmq")[0]["host_device"])
        lan.ok("nic", "remove", "vmq", "0")
        assert tap not in lan.links()
        assert lan.guest("vmq", "ip link show dev eth0").returncode != 0
        assert not lan.pings("ct1", "10.77.0.5")
    finally:
        lan.run("delete", "--force", "vmq")


def test_stopping_removes_the_taps_and_veths(lan: Site) -> None:
    devices = [str(lan.nics(n)[0]["host_device"]) for n in ("ct1", "vm1")]
    lan.ok("stop", "ct1", "vm1", "--timeout", "20")
    assert not set(devices) & lan.links()
