"""Real LXC + QEMU through corrald on its default pool (btrfs on a loop-backed file):
one disk for both kinds, conversion by reboot, copy-on-write clones, the disk quota."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from corral.wire.models import CreateRequest
from corral.wire.storage import CloneRequest
from tests.integration.conftest import Daemon
from tests.system.fixtures_template import tiny_template
from tests.system.test_daemon_real import real_daemon

__all__ = ["real_daemon", "tiny_template"]

pytestmark = [pytest.mark.system]
MARKER = "corral-guest-ready"


def _exec(daemon: Daemon, name: str, script: str) -> tuple[int, str]:
    with daemon.client() as c:
        code, out, err = c.exec(name, ["sh", "-c", script], timeout=30)
    return code, (out + err).decode(errors="replace")


def _until_exec_works(daemon: Daemon, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if _exec(daemon, name, "true")[0] == 0:
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{name}: exec never worked")


def _console_has_marker(daemon: Daemon, name: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with daemon.client() as c:
            if MARKER.encode() in c.console_log(name):
                return True
        time.sleep(0.2)
    return False


def _pool_used(daemon: Daemon) -> int:
    os.sync()
    subprocess.run(["btrfs", "filesystem", "sync", str(_pool_path(daemon))], check=False,
                   capture_output=True)
    with daemon.client() as c:
        return c.get_pool("default").used


def _pool_path(daemon: Daemon) -> Path:
    with daemon.client() as c:
        return Path(c.get_pool("default").path)


def _id_busy_on_host(ident: int) -> bool:
    """Other Corral daemons on this host (other test sessions) use host-wide cgroup paths
    keyed by instance id: corral/{ct,monitor,vm}/<id>."""
    return any(Path("/sys/fs/cgroup").glob(f"*/corral/*/{ident}"))


def _skip_busy_ids(d: Daemon, count: int) -> None:
    """Hold ids that another daemon's guests use with stopped placeholder instances, so
    the next ``count`` creates get ids free on the whole host."""
    with d.client() as c:
        free, n = 0, 0
        while free < count and n < 20:
            n += 1
            name = f"pad{n}"
            c.wait(c.create_instance(CreateRequest(name=name, type="ct", template="tiny")).id)
            if _id_busy_on_host(c.get_instance(name).id):
                continue
            free += 1
        for item in c.list_instances():
            if item.name.startswith("pad") and not _id_busy_on_host(item.id):
                c.wait(c.delete_instance(item.name).id)


def test_one_disk_two_kinds_convert_clone_quota(real_daemon: Daemon) -> None:
    d = real_daemon
    _skip_busy_ids(d, 3)
    with d.client() as c:
        pool = c.get_pool("default")
        if pool.driver != "btrfs":
            pytest.skip(f"the default pool is {pool.driver} here (no btrfs)")
        assert pool.cow and pool.active
        for name, kind in (("ct1", "ct"), ("vm1", "vm")):
            done = c.wait(c.create_instance(CreateRequest(
                name=name, type=kind, template="tiny", memory="160M", start=True)).id)
            assert done.status == "success", done.error
        # The same template reaches the same marker as either kind
        assert _console_has_marker(d, "ct1") and _console_has_marker(d, "vm1")

        # The quota: the image size is a hard limit inside the container
        _, out = _exec(d, "ct1", "dd if=/dev/zero of=/fill bs=1M count=200 2>&1; rm -f /fill")
        assert "No space left" in out, out

        # Convert CT -> VM -> CT: a file written inside survives, nothing is copied
        assert _exec(d, "ct1", "echo kept-across-kinds > /root/proof; sync")[0] == 0
        ident = c.get_instance("ct1").id
        used = _pool_used(d)
        assert c.wait(c.convert_instance("ct1", "vm", force=True).id).status == "success"
        assert c.get_instance("ct1").type == "vm" and c.get_instance("ct1").id == ident
        _until_exec_works(d, "ct1")
        assert _exec(d, "ct1", "cat /root/proof") == (0, "kept-across-kinds\n")
        assert abs(_pool_used(d) - used) < 16 * 1024**2
        assert _exec(d, "ct1", "echo from-the-vm >> /root/proof; sync")[0] == 0
        assert c.wait(c.convert_instance("ct1", "ct", force=True).id).status == "success"
        assert c.get_instance("ct1").type == "ct"
        assert _exec(d, "ct1", "cat /root/proof") == (0, "kept-across-kinds\nfrom-the-vm\n")

        # Clone: copy-on-write, the pool's used space barely moves
        for name in ("ct1", "vm1"):
            assert c.wait(c.action(name, "stop").id).status == "success"
        used = _pool_used(d)
        done = c.wait(c.clone_instance("ct1", CloneRequest(name="ct2")).id)
        assert done.status == "success", done.error
        assert abs(_pool_used(d) - used) < 4 * 1024**2
        assert c.wait(c.action("ct2", "start").id).status == "success"
        assert _exec(d, "ct2", "cat /root/proof")[1] == "kept-across-kinds\nfrom-the-vm\n"
        assert c.wait(c.action("ct2", "stop").id).status == "success"
        for item in c.list_instances():
            assert c.wait(c.delete_instance(item.name).id).status == "success"


def test_both_kinds_grow_to_16_tib(real_daemon: Daemon) -> None:
    """The README's sizes are no ceiling: a template's image grows to 16 TiB as either kind
    (a 1 KiB-block base image failed in resize2fs past ~1 TiB)."""
    d = real_daemon
    with d.client() as c:
        if c.get_pool("default").driver == "dir":
            pytest.skip("the default pool is a directory on the host's file system here "
                        "(no file of 16 TiB on ext4)")
        before = c.policy()
        c.set_policy({"disk": "1000"})  # the default ratio refuses 16 TiB on this host
        try:
            for name, kind in (("bigct", "ct"), ("bigvm", "vm")):
                done = c.wait(c.create_instance(CreateRequest(
                    name=name, type=kind, template="tiny", disk="16T", memory="160M",
                    start=True)).id)
                assert done.status == "success", done.error
            for name in ("bigct", "bigvm"):
                _until_exec_works(d, name)
                code, out = _exec(d, name, "df -k / | tail -n 1")
                assert code == 0, out
                size_kib = int(out.split()[1])
                # 16 TiB less ext4's metadata (inode tables: 1 inode per 16 KiB, as mke2fs makes)
                assert size_kib > 15.5 * 1024**3, out
        finally:
            for item in c.list_instances():
                if item.name in ("bigct", "bigvm"):
                    c.wait(c.delete_instance(item.name, force=True).id)
            c.set_policy({"disk": str(before.disk)})
