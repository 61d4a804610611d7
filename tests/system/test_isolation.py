"""Isolation: an unprivileged container's root attacks the host and fails.

A real corrald (real drivers) in a network namespace the test makes (as in
tests/system/net/test_guest_nics.py), two tiny containers, ct1 on a bridged network. From
inside ct1, as its root: mknod of host devices, mounting host block devices and a devtmpfs,
reading ct2's disk through its loop device, writes to the cgroup files it sees, raw frames
with another source MAC or IP, and finally ``reboot -f``. Each is refused, the spoofed frames
never reach the bridge (a packet socket on it in the namespace sees the genuine ones), and
the host is unaffected: the same boot id, no new block-device mounts, no new /dev nodes, the
same top-level cgroups and ct1's limits as set. ct1's root is uid 100000+ in the initial user
namespace (no capability there) and its bounding set lacks CAP_SYS_MODULE.
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
from tests.integration.conftest import (
    Daemon,
    daemon_env,
    start_daemon,
    stop_and_clean,
)
from tests.system.fixtures_template import tiny_template
from tests.system.net.lab import can_run, in_ns, sh
from tests.system.net.test_guest_nics import _in_netns
from tests.system.test_daemon_real import _skip_reason

pytestmark = pytest.mark.system
__all__ = ["tiny_template"]

SNIFF = str(Path(__file__).with_name("sniff.py"))
CT_IP, SPOOF_IP, HOST_IP, SPOOF_MAC = "10.78.0.2", "10.78.0.99", "10.78.0.200", \
    "02:00:00:00:00:99"
CAP_SYS_MODULE, CAP_SYS_BOOT = 16, 22


@dataclass
class Site:
    daemon: Daemon
    netns: str
    bridge: str

    def ok(self, *args: str) -> str:
        proc = self.daemon.cli(*args)
        assert proc.returncode == 0, f"corral {' '.join(args)}: {proc.stderr}{proc.stdout}"
        return proc.stdout

    def guest(self, name: str, script: str) -> subprocess.CompletedProcess[str]:
        return self.daemon.cli("exec", name, "--", "sh", "-c", script)


@pytest.fixture(scope="module")
def site(tiny_template: TemplateImage) -> Iterator[Site]:
    reason = _skip_reason() or can_run()
    if reason:
        pytest.skip(reason)
    netns = f"crltest-iso-{secrets.token_hex(3)}"
    sh("ip", "netns", "add", netns)
    in_ns(netns, "ip", "link", "set", "lo", "up")
    state = Path(tempfile.mkdtemp(prefix="corral-isolation-"))
    state.chmod(0o711)  # unprivileged containers (host uid 100000) walk to their disks
    shutil.copytree(tiny_template.directory, state / "templates" / "tiny")
    prefix = _in_netns(netns)
    daemon = start_daemon(state, drivers="real", prefix=prefix)
    try:
        site = Site(daemon, netns, "")
        site.ok("network", "create", "isolan", "--type", "bridged", "--subnet",
                "10.78.0.0/24")
        site.bridge = next(n["bridge"] for n in json.loads(site.ok("network", "list", "-f",
                                                                   "json")))
        in_ns(netns, "ip", "addr", "add", f"{HOST_IP}/24", "dev", site.bridge)
        for name in ("ct1", "ct2"):
            site.ok("create", name, "--type", "ct", "--template", "tiny", "--memory", "128M",
                    "--disk", "128M")
        site.ok("nic", "add", "ct1", "--network", "isolan", "--ip", CT_IP)
        site.ok("start", "ct1", "ct2")
        deadline = time.monotonic() + 60
        while site.guest("ct1", "true").returncode != 0:
            assert time.monotonic() < deadline, "ct1 never answered exec"
            time.sleep(0.5)
        yield site
    finally:
        try:
            stop_and_clean(daemon, prefix)
        finally:
            sh("ip", "netns", "del", netns, check=False)
            shutil.rmtree(state, ignore_errors=True)


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _device_mounts() -> set[tuple[str, str]]:
    """(source, mount point) of the host's mounts of block devices and devtmpfs (loop devices
    left out: other tests on this host mount theirs)."""
    found = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ", 1)
        source, fstype = fields[1].split()[1], fields[1].split()[0]
        if (source.startswith("/dev/") and not source.startswith("/dev/loop")) \
                or fstype == "devtmpfs":
            found.add((source, line.split()[4]))
    return found


def _dev_nodes() -> set[str]:
    return {p.name for p in Path("/dev").iterdir() if not p.name.startswith("loop")}


def _top_cgroups() -> set[str]:
    """Each hierarchy's top-level groups but test daemons' own (corral-*), made and removed
    by other tests as they run."""
    base = Path("/sys/fs/cgroup")
    return {f"{h.name}/{g.name}" for h in base.iterdir() if h.is_dir()
            for g in h.iterdir() if g.is_dir() and not g.name.startswith("corral")}


def _ct_cgroup(site: Site, name: str, controller: str) -> Path:
    root = daemon_env(site.daemon.state_dir)["CORRAL_CGROUP_ROOT"]
    ident = json.loads(site.ok("info", name, "-f", "json"))["id"]
    found = sorted(Path(f"/sys/fs/cgroup/{controller}/{root}/ct").glob(f"*{ident}*"))
    assert found, f"no {controller} cgroup for {name}"
    return found[0]


def _loop_of(*parts: str) -> tuple[str, str]:
    """The loop device whose backing file's path holds each of ``parts``, and that path."""
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        path = backing.read_text().strip()
        if all(part in path for part in parts):
            return backing.parent.parent.name, path
    raise AssertionError(f"no loop device backs {parts}")


def _attempts(site: Site, script: str) -> dict[str, int]:
    proc = site.guest("ct1", script)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            _, what, code = line.split()
            results[what] = int(code)
    assert results, f"no results from ct1: {proc.stdout}{proc.stderr}"
    return results


def test_a_containers_root_cannot_reach_the_host(site: Site) -> None:
    boot, mounts, nodes, groups = _boot_id(), _device_mounts(), _dev_nodes(), _top_cgroups()
    memory = _ct_cgroup(site, "ct1", "memory") / "memory.limit_in_bytes"
    pids = _ct_cgroup(site, "ct1", "pids") / "pids.max"
    limits = (memory.read_text(), pids.read_text())
    ct2 = json.loads(site.ok("info", "ct2", "-f", "json"))["id"]
    # ct2 runs: its root disk is loop-mounted (in the daemon's mount namespace)
    loop2, disk2 = _loop_of(f"{site.daemon.state_dir}/pools/", f"/volumes/{ct2}/root.img")
    major_minor = Path(f"/sys/block/{loop2}/dev").read_text().strip().split(":")
    root_dev = next(p for p in Path("/sys/block").iterdir()
                    if not p.name.startswith(("loop", "ram", "zram")))
    root_mm = (root_dev / "dev").read_text().strip().split(":")

    inside = _attempts(site, f"""
        try() {{ name=$1; shift; "$@" >/dev/null 2>&1; echo "RESULT $name $?"; }}
        try mknod-host-disk mknod /tmp/hostdisk b {root_mm[0]} {root_mm[1]}
        try mknod-dev-mem mknod /tmp/mem c 1 1
        try mount-host-disk mount -t ext4 /dev/{root_dev.name} /mnt
        try mount-devtmpfs mount -t devtmpfs devtmpfs /mnt
        try mknod-ct2-disk mknod /tmp/ct2 b {major_minor[0]} {major_minor[1]}
        try read-ct2-disk dd if=/dev/{loop2} of=/dev/null bs=4096 count=1
        try read-ct2-path head -c 1 {disk2}
        try cgroup-memory sh -c 'echo -1 > /sys/fs/cgroup/memory/memory.limit_in_bytes'
        try cgroup-pids sh -c 'echo max > /sys/fs/cgroup/pids/pids.max'
        try cgroup-escape sh -c 'echo $$ > /sys/fs/cgroup/memory/../tasks'
        try cgroup-release-agent sh -c 'echo /tmp/x > /sys/fs/cgroup/memory/release_agent'
        try sysrq sh -c 'echo b > /proc/sysrq-trigger'
        try kernel-param sh -c 'echo 1 > /proc/sys/kernel/panic'
        try insmod insmod /tmp/none.ko
    """)
    refused = {what: code for what, code in inside.items() if code == 0}
    assert refused == {}, f"ct1's root succeeded at: {sorted(refused)}"

    proc = site.guest("ct1", "head -1 /proc/self/uid_map; grep CapBnd /proc/self/status")
    uid_map, capbnd = proc.stdout.splitlines()[0].split(), proc.stdout.splitlines()[1].split()
    assert uid_map[0] == "0" and int(uid_map[1]) >= 100000, uid_map  # not the host's root
    assert not int(capbnd[1], 16) & (1 << CAP_SYS_MODULE), capbnd

    # Spoofed frames: a packet socket on the bridge sees ct1's genuine ping, never a frame
    # with another source address or MAC.
    sniffer = subprocess.Popen(["ip", "netns", "exec", site.netns, sys.executable, SNIFF,
                                site.bridge, "25"], stdout=subprocess.PIPE, text=True)
    try:
        assert sniffer.stdout is not None and sniffer.stdout.readline().strip() == "ready"
        real_mac = site.guest("ct1", "cat /sys/class/net/eth0/address").stdout.strip()
        site.guest("ct1", f"ping -c 2 -W 2 {HOST_IP}")
        site.guest("ct1", f"ip addr add {SPOOF_IP}/24 dev eth0; ping -c 3 -W 1 -I {SPOOF_IP} "
                          f"{HOST_IP}; arping -c 2 -s {SPOOF_IP} -I eth0 {HOST_IP}; "
                          f"ip addr del {SPOOF_IP}/24 dev eth0")
        site.guest("ct1", f"ip link set eth0 down; ip link set eth0 address {SPOOF_MAC}; "
                          f"ip link set eth0 up; ip neigh flush dev eth0; "
                          f"ping -c 3 -W 1 {HOST_IP}; ip link set eth0 down; "
                          f"ip link set eth0 address {real_mac}; ip link set eth0 up")
    finally:
        sniffer.terminate()
        out, _ = sniffer.communicate(timeout=30)
    frames = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(f["mac"] == real_mac and f["ip"] == CT_IP for f in frames), frames[:20]
    leaked = [f for f in frames if f["ip"] == SPOOF_IP or f["mac"] == SPOOF_MAC]
    assert leaked == []

    # reboot -f in ct1: its own init goes, the host stays.
    site.guest("ct1", "reboot -f")
    time.sleep(2)
    assert _boot_id() == boot
    assert _device_mounts() == mounts
    assert _dev_nodes() == nodes
    assert _top_cgroups() == groups
    if memory.exists():  # (a reboot may have recreated the cgroup: the limits are set again)
        assert (memory.read_text(), pids.read_text()) == limits
    assert site.guest("ct2", "true").returncode == 0  # the neighbour runs on
