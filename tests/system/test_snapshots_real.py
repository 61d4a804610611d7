"""Snapshots and backups of real containers and VMs through corrald (tiny template).

Disk snapshots while running, revert, branching; memory snapshots of a VM (a tmpfs file and
a running process survive the revert); a container's memory snapshot refused with CRIU's
reason; online backups to a local and an S3 (moto_server) target restored as new instances
that boot with exactly the data from before the backup.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.backup.manifest import manifest_key
from corral.backup.targets import open_target
from corral.client.backups import BackupCalls
from corral.templates.image import TemplateImage
from tests.integration.conftest import Daemon
from tests.integration.s3server import ACCESS_KEY, SECRET_KEY, s3_server
from tests.system.fixtures_template import tiny_template
from tests.system.limits_in_force import InForce, in_force, init_pid
from tests.system.test_daemon_real import tiny_real_daemon

__all__ = ["tiny_template"]

pytestmark = [pytest.mark.system]
MARKER = b"corral-guest-ready"
MiB = 1 << 20
CHUNK = 4 * MiB


@pytest.fixture(scope="module")
def real_daemon(tiny_template: TemplateImage) -> Iterator[Daemon]:
    """One daemon for the module (a real-driver start is ~2-5 s here): each test makes its
    own instances under its own names and deletes them at its end; what a failing test
    leaves goes with the daemon."""
    with tiny_real_daemon(tiny_template) as daemon:
        yield daemon


# Helpers --------------------------------------------------------------------------------
def sh(daemon: Daemon, name: str, script: str, timeout: float = 60) -> str:
    """Run ``script`` in the guest; its stdout (the test fails on a non-zero exit)."""
    with daemon.client() as c:
        code, out, err = c.exec(name, ["sh", "-c", script], timeout=timeout)
    assert code == 0, f"{name}: `{script}` exited {code}: {err.decode(errors='replace')}"
    return out.decode(errors="replace")


def wait_ready(daemon: Daemon, name: str, timeout: float = 90) -> None:
    """The guest printed its ready marker (since its last start) and exec works."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with daemon.client() as c:
            log = c.console_log(name, limit=1 << 20)
        if MARKER in log:
            try:
                with daemon.client() as c:
                    if c.exec(name, ["true"], timeout=10)[0] == 0:
                        return
            except Exception:
                pass
        time.sleep(0.2)
    raise AssertionError(f"{name} never became ready")


def state(daemon: Daemon, name: str) -> str:
    with daemon.client() as c:
        return c.get_instance(name).state


def create(daemon: Daemon, name: str, kind: str, data_disk: bool = False) -> None:
    """A running tiny guest; with ``data_disk``: a 16 MiB data disk ``data`` at /mnt/data
    (added before the first start: a microvm VM cannot hot-plug)."""
    daemon.cli("create", name, "--type", kind, "--template", "tiny", "--memory", "160M",
               "--disk", "64M", *([] if data_disk else ["--start"]), check=True)
    if data_disk:
        daemon.cli("disk", "add", name, "data", "--size", "16M", check=True)
        daemon.cli("start", name, check=True)
    wait_ready(daemon, name)
    if data_disk:
        mount_data(daemon, name)


def mount_data(daemon: Daemon, name: str) -> None:
    """The data disk at /mnt/data: a container has it mounted by Corral; a VM's guest mounts
    its virtio disk (serial ``data``) itself."""
    sh(daemon, name, "grep -q ' /mnt/data ' /proc/mounts || { mkdir -p /mnt/data && "
                     "for b in /sys/block/vd*; do [ \"$(cat $b/serial 2>/dev/null)\" = data ] && "
                     "mount -t ext4 /dev/${b##*/} /mnt/data; done; "
                     "grep -q ' /mnt/data ' /proc/mounts; }")


def snapshot(daemon: Daemon, name: str, snap: str, *more: str) -> None:
    daemon.cli("snapshot", "create", name, snap, *more, check=True)


def revert(daemon: Daemon, name: str, snap: str) -> None:
    daemon.cli("snapshot", "revert", name, snap, check=True)


def restart_after_revert(daemon: Daemon, name: str) -> None:
    assert state(daemon, name) == "stopped"  # disk-only revert leaves it stopped
    daemon.cli("start", name, check=True)
    wait_ready(daemon, name)
    mount_data(daemon, name)


def disk_of(daemon: Daemon, name: str, disk: str = "root") -> Path:
    with daemon.client() as c:
        ident = c.get_instance(name).id
    found = list(daemon.state_dir.glob(f"pools/*/volumes/{ident}/{disk}.img"))
    found += list((daemon.state_dir / "instances" / str(ident)).glob("root.img"))
    assert len(found) == 1, found
    return found[0]


def chunk_digests(path: Path) -> dict[int, str]:
    """sha256 of every 4 MiB chunk of ``path`` that is not all zero (what an unencrypted
    manifest names)."""
    found: dict[int, str] = {}
    zero = bytes(CHUNK)
    with path.open("rb") as f:
        index = 0
        while data := f.read(CHUNK):
            if data != zero[: len(data)]:
                found[index] = hashlib.sha256(data).hexdigest()
            index += 1
    return found


def write_random(daemon: Daemon, name: str, path: str, kib: int) -> str:
    """Write ``kib`` KiB of random data to ``path`` in the guest, sync; its sha256."""
    out = sh(daemon, name, f"dd if=/dev/urandom of={path} bs=1024 count={kib} 2>/dev/null && "
                           f"sync && sha256sum {path}")
    return out.split()[0]


def guest_sha(daemon: Daemon, name: str, path: str) -> str:
    return sh(daemon, name, f"sha256sum {path}").split()[0]


def tree(daemon: Daemon, name: str) -> dict[str, str | None]:
    """snapshot name -> parent name, and ``*`` -> the current one."""
    data = json.loads(daemon.cli("snapshot", "list", name, "-f", "json", check=True).stdout)
    by_id = {s["id"]: s["name"] for s in data["snapshots"]}
    found: dict[str, str | None] = {s["name"]: by_id.get(s["parent"]) for s in data["snapshots"]}
    found["*"] = next((s["name"] for s in data["snapshots"] if s["current"]), None)
    return found


# Snapshots ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ct", "vm"])
def test_disk_snapshot_revert_and_branching(real_daemon: Daemon, kind: str) -> None:
    """Root and data disk in every snapshot, taken while running; a revert brings both
    back."""
    d, name = real_daemon, f"snap-{kind}"
    create(d, name, kind, data_disk=True)

    def write(word: str) -> None:
        sh(d, name, f"echo {word} > /root/file && echo {word}-data > /mnt/data/file && sync")

    def read() -> str:
        return sh(d, name, "cat /root/file /mnt/data/file")

    write("one")
    snapshot(d, name, "s1")  # while running
    assert state(d, name) == "running"
    write("two")
    snapshot(d, name, "s2")
    write("three")

    revert(d, name, "s1")
    restart_after_revert(d, name)
    assert read() == "one\none-data\n"
    write("branch")
    snapshot(d, name, "s3")  # a second child of s1
    assert tree(d, name) == {"s1": None, "s2": "s1", "s3": "s1", "*": "s3"}

    revert(d, name, "s2")
    restart_after_revert(d, name)
    assert read() == "two\ntwo-data\n"
    d.cli("snapshot", "delete", name, "s1", check=True)  # the middle: children re-parented
    assert tree(d, name) == {"s2": None, "s3": None, "*": "s2"}
    revert(d, name, "s3")
    restart_after_revert(d, name)
    assert read() == "branch\nbranch-data\n"
    d.cli("delete", "--force", name, check=True)


def test_vm_memory_snapshot_resumes_with_its_ram(real_daemon: Daemon) -> None:
    d, name = real_daemon, "mem-vm"
    create(d, name, "vm", data_disk=True)
    # /tmp is tmpfs: only RAM holds it. A counter process keeps counting into it.
    sh(d, name, "echo before > /tmp/ram && echo disk-before > /root/file && "
                "echo data-before > /mnt/data/file && sync && "
                "(i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.2; done) "
                "</dev/null >/dev/null 2>&1 & echo $! > /tmp/counter.pid")
    pid = sh(d, name, "cat /tmp/counter.pid").strip()
    snapshot(d, name, "live", "--memory")
    assert state(d, name) == "running"
    counted = int(sh(d, name, "cat /tmp/count"))
    sh(d, name, f"echo after > /tmp/ram && echo disk-after > /root/file && "
                f"echo data-after > /mnt/data/file && sync && kill {pid}")

    revert(d, name, "live")
    assert state(d, name) == "running"  # resumed, not rebooted
    assert sh(d, name, "cat /tmp/ram") == "before\n"
    assert sh(d, name, "cat /root/file") == "disk-before\n"
    assert sh(d, name, "cat /mnt/data/file") == "data-before\n"  # still mounted, reverted
    assert sh(d, name, "echo 3 > /proc/sys/vm/drop_caches && cat /mnt/data/file") == (
        "data-before\n")  # the disk itself, not only the restored page cache
    assert sh(d, name, f"cat /proc/{pid}/cmdline >/dev/null && echo alive") == "alive\n"
    first = int(sh(d, name, "cat /tmp/count"))
    deadline = time.monotonic() + 30
    while int(sh(d, name, "cat /tmp/count")) <= first and time.monotonic() < deadline:
        time.sleep(0.3)
    assert int(sh(d, name, "cat /tmp/count")) > first  # the same process counts on
    assert first <= counted + 50  # from where it was, not from zero after a reboot
    with d.client() as c:
        boots = c.console_log(name, limit=1 << 20).count(MARKER)
    assert boots == 1, "the revert must not boot the guest again"
    d.cli("delete", "--force", name, check=True)


def test_vm_memory_snapshot_after_a_live_memory_change(real_daemon: Daemon) -> None:
    """A live ``set memory=`` balloons below the RAM QEMU booted with, and a disk added to a
    running microvm VM waits for its next start: the revert must start QEMU as it ran when
    the state was saved (booted RAM size, only the disks it had), or the state does not
    load and the VM cold-boots (the README tour's order: disk add, then snapshot --memory)."""
    d, name = real_daemon, "mem-set-vm"
    create(d, name, "vm")
    d.cli("set", name, "memory=128M", check=True)
    d.cli("disk", "add", name, "later", "--size", "16M", check=True)
    sh(d, name, "echo before > /tmp/ram")
    snapshot(d, name, "after-set", "--memory")
    sh(d, name, "echo after > /tmp/ram")
    revert(d, name, "after-set")
    assert state(d, name) == "running"
    assert sh(d, name, "cat /tmp/ram") == "before\n"
    with d.client() as c:
        boots = c.console_log(name, limit=1 << 20).count(MARKER)
    assert boots == 1, "the revert must resume the snapshot, not boot the guest again"
    d.cli("delete", "--force", name, check=True)


def _ct_criu_why_not() -> str:
    from corral.host import criu

    status = criu.probe()
    return "" if status.works else f"CRIU does not work here: {status.reason}"


@pytest.mark.skipif(not _ct_criu_why_not(), reason="CRIU works here: nothing is refused")
def test_container_memory_snapshot_refused_with_criu_reason(real_daemon: Daemon) -> None:
    """Where CRIU fails its probe: refused before anything is made."""
    d, name = real_daemon, "mem-ct"
    create(d, name, "ct")
    refused = d.cli("snapshot", "create", name, "m", "--memory")
    assert refused.returncode != 0
    assert "criu" in refused.stderr.lower(), refused.stderr
    assert tree(d, name) == {"*": None}
    assert state(d, name) == "running"
    d.cli("delete", "--force", name, check=True)


@pytest.mark.skipif(bool(_ct_criu_why_not()), reason=_ct_criu_why_not())
def test_container_memory_snapshot_resumes_its_processes(real_daemon: Daemon) -> None:
    """A container's memory snapshot (CRIU; the default kind, unprivileged: its idmapped root
    made by Corral for the restore): a counter process advanced after it is back at the
    snapshot's value after the revert, the same process, counting on."""
    d, name = real_daemon, "mem-ct2"
    d.cli("create", name, "--type", "ct", "--template", "tiny", "--memory", "160M",
          "--disk", "64M", "--start", check=True)
    wait_ready(d, name)
    # setsid: a process in the session of the exec (lxc-attach, outside) cannot be dumped
    sh(d, name, "echo disk-before > /root/file && sync && "
                "setsid sh -c 'echo $$ > /root/counter.pid; i=0; while true; do "
                "i=$((i+1)); echo $i > /root/count; sleep 0.1; done' "
                "</dev/null >/dev/null 2>&1 &")
    deadline = time.monotonic() + 20  # under load the background shell starts late
    while d.cli("exec", name, "--", "test", "-s", "/root/counter.pid").returncode != 0:
        assert time.monotonic() < deadline, "the counter never started"
        time.sleep(0.2)
    pid = sh(d, name, "cat /root/counter.pid").strip()
    time.sleep(0.5)
    snapshot(d, name, "live", "--memory")
    assert state(d, name) == "running"
    d.cli("set", name, "cpu_limit=40", "memory=140M", check=True)  # after the snapshot
    counted = int(sh(d, name, "cat /root/count"))
    time.sleep(1.5)
    advanced = int(sh(d, name, "cat /root/count"))
    assert advanced > counted + 5
    sh(d, name, "echo disk-after > /root/file && sync")

    revert(d, name, "live")
    assert state(d, name) == "running"  # resumed, not rebooted
    first = int(sh(d, name, "cat /root/count"))
    # back at the snapshot's value: without the revert it could only have grown (how far it
    # counted on since the restore depends on this host's load, so no upper bound here)
    assert first < advanced, (first, counted, advanced)
    assert sh(d, name, "cat /root/file") == "disk-before\n"
    assert sh(d, name, f"cat /proc/{pid}/cmdline >/dev/null && echo alive") == "alive\n"
    deadline = time.monotonic() + 20
    while int(sh(d, name, "cat /root/count")) <= first and time.monotonic() < deadline:
        time.sleep(0.2)
    assert int(sh(d, name, "cat /root/count")) > first  # the same process counts on
    with d.client() as c:
        boots = c.console_log(name, limit=1 << 20).count(MARKER)
    assert boots == 1, "the revert must not boot the container again"
    # the limits set since the snapshot act on the restored init, and change live
    assert _ct_limits(d, name) == InForce(140 * 1024**2, 40.0)
    d.cli("set", name, "cpu_limit=30", "memory=150M", check=True)
    assert _ct_limits(d, name) == InForce(150 * 1024**2, 30.0)
    # a restored container runs in its group itself and an exec in LXC's inner group: while
    # one runs, `info` names init (the exec was taken for init, and every dump failed on
    # init's console: "Can't lookup mount=… for fd=0"); a memory snapshot is refused, naming
    # it (CRIU's dump would leave it out: it is not below init), nothing made, the exec
    # running on; once it ended, the snapshot is taken
    ran = threading.Thread(target=d.cli, args=("exec", name, "--", "sleep", "37"))
    ran.start()
    try:
        deadline = time.monotonic() + 20
        while "sleep 37" not in sh(d, name, "ps"):
            assert time.monotonic() < deadline, "the exec never ran"
            time.sleep(0.2)
        found = json.loads(d.cli("info", name, "-f", "json", check=True).stdout)
        assert found["pid"] == init_pid(d.state_dir / "lxc", str(found["id"]))
        before, made = tree(d, name), sorted(d.state_dir.glob("**/snapshots/*"))
        refused = d.cli("snapshot", "create", name, "again", "--memory")
        assert refused.returncode != 0
        assert "(sleep 37)" in refused.stderr and "without --memory" in refused.stderr, \
            refused.stderr
        assert tree(d, name) == before
        assert sorted(d.state_dir.glob("**/snapshots/*")) == made  # nothing left behind
        assert "sleep 37" in sh(d, name, "ps") and ran.is_alive()
    finally:
        sh(d, name, "kill $(ps | awk '/[s]leep 37/ {print $1}') || true")
        ran.join()
    snapshot(d, name, "again", "--memory")
    d.cli("delete", "--force", name, check=True)


def _ct_limits(d: Daemon, name: str) -> InForce:
    found = json.loads(d.cli("info", name, "-f", "json", check=True).stdout)
    return in_force(init_pid(d.state_dir / "lxc", str(found["id"])))


# Backups --------------------------------------------------------------------------------
def disk_chunks(url: str, backup_id: str) -> dict[str, dict[int, str]]:
    """Per disk of the committed manifest: chunk index -> name (= sha256, unencrypted)."""
    raw = _manifest(url, backup_id)
    found = {"root": {int(c[0]): str(c[1]) for c in raw["chunks"]}}
    for disk in raw.get("disks", []):
        found[disk["name"]] = {int(c[0]): str(c[1]) for c in disk["chunks"]}
    return found


def assert_restored(d: Daemon, name: str, target: str, url: str, backup_id: str) -> None:
    """Every disk of ``name`` is, byte for byte, the image the backup was taken from (the
    manifest read straight from ``url``; its sizes through corrald from ``target``)."""
    for disk, chunks in disk_chunks(url, backup_id).items():
        assert chunk_digests(disk_of(d, name, disk)) == chunks, disk
    with d.client() as c:
        sizes = {x.name: x.size for x in BackupCalls(c).backup_info(target, backup_id).disks}
    assert {n: disk_of(d, name, n).stat().st_size for n in sizes} == sizes


def backup_and_restore(d: Daemon, name: str, kind: str, target: str, url: str,
                       in_place: bool = False) -> None:
    """Back ``name`` (root + a data disk) up while it runs, write more, restore as a new
    instance: it boots, has the data from before the backup on both disks, and its disks
    are byte-identical to the backup's point-in-time images. ``in_place``: then also over
    the stopped original."""
    create(d, name, kind, data_disk=True)
    before = write_random(d, name, "/root/data", 2048)
    before_data = write_random(d, name, "/mnt/data/blob", 3072)
    d.cli("backup", "create", name, "--to", target, check=True)
    assert state(d, name) == "running"
    sh(d, name, "dd if=/dev/urandom of=/root/data bs=1024 count=64 conv=notrunc 2>/dev/null "
                "&& echo later > /root/later && echo later > /mnt/data/later && "
                "dd if=/dev/urandom of=/mnt/data/blob bs=1024 count=64 conv=notrunc "
                "2>/dev/null && sync")
    with d.client() as c:
        [backup] = BackupCalls(c).backups(target, name)
    assert "online" in backup.consistency, backup.consistency
    print(f"\n{kind} backup of root + data disk: {backup.consistency}")
    assert ("blockdev-backup" if kind == "vm" else  # every filesystem frozen, not synced
            "root and data filesystems frozen (fsfreeze)") in backup.consistency
    assert [x.name for x in backup.disks] == ["root", "data"]

    def check(instance: str) -> None:
        d.cli("start", instance, check=True)
        wait_ready(d, instance)
        mount_data(d, instance)
        assert guest_sha(d, instance, "/root/data") == before
        assert guest_sha(d, instance, "/mnt/data/blob") == before_data
        assert sh(d, instance, "ls /root/later /mnt/data/later 2>/dev/null; true") == ""

    copy = f"{name}-copy"
    d.cli("restore", backup.id, "--to", target, "--as", copy, check=True)
    assert_restored(d, copy, target, url, backup.id)
    check(copy)
    if in_place:
        d.cli("stop", "--force", name, check=True)
        d.cli("restore", backup.id, "--to", target, check=True)
        assert_restored(d, name, target, url, backup.id)
        check(name)
    d.cli("delete", "--force", name, copy, check=True)


def _manifest(url: str, backup_id: str) -> dict[str, Any]:
    """The committed manifest as stored, read straight from the target (not via corrald)."""
    target = open_target(url, ACCESS_KEY, SECRET_KEY)
    return json.loads(target.get(manifest_key(backup_id)))  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", ["ct", "vm"])
def test_online_backup_restore_as_new_instance(real_daemon: Daemon, kind: str) -> None:
    target = Path(tempfile.mkdtemp(prefix="corral-backups-", dir=real_daemon.state_dir))
    backup_and_restore(real_daemon, f"bk-{kind}", kind, str(target), str(target),
                       in_place=True)


@pytest.fixture
def s3_endpoint(real_daemon: Daemon) -> Iterator[str]:
    with s3_server(real_daemon.state_dir) as endpoint:
        yield endpoint


def test_s3_round_trip_with_a_real_container(real_daemon: Daemon, s3_endpoint: str) -> None:
    d = real_daemon
    url = f"s3://corral-real/backups?endpoint={s3_endpoint}"
    d.cli("backup", "target", "add", "s3", url, "--access-key", ACCESS_KEY, "--secret-key",
          SECRET_KEY, check=True)
    backup_and_restore(d, "s3-ct", "ct", "s3", url)


@pytest.mark.parametrize("kind", ["ct", "vm"])
def test_incremental_backup_after_a_one_percent_change(real_daemon: Daemon, kind: str) -> None:
    """A 1 % change of a 128 MiB disk (1.3 MiB into an existing file) stores about the
    chunks it touched. A VM reads only those (QEMU dirty bitmaps, one per disk, handed from
    backup to backup); a container is read whole and deduplicated by chunk hash. A data disk
    changed only in the second backup is incremental on its own. The last of a chain of
    incrementals restores to exactly the guest's data."""
    d, name = real_daemon, f"inc-{kind}"
    d.cli("create", name, "--type", kind, "--template", "tiny", "--memory", "160M",
          "--disk", "128M", check=True)
    d.cli("disk", "add", name, "data", "--size", "64M", check=True)
    d.cli("start", name, check=True)
    wait_ready(d, name)
    mount_data(d, name)
    write_random(d, name, "/root/data", 32 * 1024)
    write_random(d, name, "/mnt/data/blob", 16 * 1024)
    target = str(Path(tempfile.mkdtemp(prefix="corral-backups-", dir=d.state_dir)))
    d.cli("backup", "create", name, "--to", target, check=True)
    change = ("dd if=/dev/urandom of={} bs=1024 count=1310 seek={} conv=notrunc "
              "2>/dev/null && sync && sha256sum {}")
    sh(d, name, change.format("/root/data", 8192, "/root/data"))
    data_sha = sh(d, name, change.format("/mnt/data/blob", 4096, "/mnt/data/blob")).split()[0]
    d.cli("backup", "create", name, "--to", target, check=True)
    expected = sh(d, name, change.format("/root/data", 20000, "/root/data")).split()[0]
    d.cli("backup", "create", name, "--to", target, check=True)
    with d.client() as c:
        first, second, third = BackupCalls(c).backups(target, name)
    assert first.stats.new_bytes >= 48 * MiB
    assert (second.parent, third.parent) == (first.id, second.id)
    for inc, disks in ((second, 2), (third, 1)):  # the data disk changed in the second only
        new = inc.stats.new_bytes
        assert new < disks * 6 * CHUNK, f"{new / MiB:.1f} MiB new after 1.3 MiB changes"
        if kind == "vm":
            assert [x.method for x in inc.disks] == ["dirty-bitmap", "dirty-bitmap"]
            assert inc.stats.read_bytes < disks * 6 * CHUNK  # only the dirty chunks were read
        print(f"\n{kind}: full {first.stats.new_bytes / MiB:.1f} MiB new, incremental "
              f"({disks} disk{'s' if disks > 1 else ''} changed) {new / MiB:.1f} MiB new "
              f"({100 * new / inc.disk_size:.1f} % of the root disk), "
              f"{inc.stats.read_bytes / MiB:.1f} MiB read, {inc.stats.seconds:.2f} s")

    if kind == "vm":  # QEMU restarted: its bitmaps are gone, so the whole disk is read
        d.cli("restart", name, check=True)
        wait_ready(d, name)
        d.cli("backup", "create", name, "--to", target, check=True)
        with d.client() as c:
            fourth = BackupCalls(c).backups(target, name)[-1]
        assert fourth.method == "hash" and fourth.stats.read_bytes >= 48 * MiB

    copy = f"{name}-copy"
    d.cli("restore", third.id, "--to", target, "--as", copy, check=True)
    assert_restored(d, copy, target, target, third.id)
    d.cli("start", copy, check=True)
    wait_ready(d, copy)
    mount_data(d, copy)
    assert guest_sha(d, copy, "/root/data") == expected
    assert guest_sha(d, copy, "/mnt/data/blob") == data_sha
    d.cli("delete", "--force", name, copy, check=True)
