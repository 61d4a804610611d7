"""Snapshots and backups through a real corrald (fake driver), its API and the CLI."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from corral.client.backups import BackupCalls
from corral.state.backupstore import BackupStore
from corral.wire.backups import VerifyRequest
from tests.integration.conftest import Daemon, start_daemon, stop_daemon

MiB = 1 << 20


def disk_of(daemon: Daemon, name: str) -> Path:
    with daemon.client() as c:
        instance_id = c.get_instance(name).id
    found = list((daemon.state_dir / "instances" / str(instance_id)).glob("root.img"))
    if not found:  # a pool disk
        found = list(daemon.state_dir.glob(f"pools/*/volumes/{instance_id}/root.img"))
    assert len(found) == 1, found
    return found[0]


def create(daemon: Daemon, name: str, disk: str = "64M", start: bool = True) -> Path:
    args = ["create", name, "--type", "ct", "--template", "tiny", "--disk", disk]
    daemon.cli(*args, *(["--start"] if start else []), check=True)
    return disk_of(daemon, name)


def fill(path: Path, offset: int, size: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(os.urandom(size))


def test_backup_incremental_restore_verify(daemon: Daemon, tmp_path: Path) -> None:
    disk = create(daemon, "web")
    fill(disk, 0, 48 * MiB)
    store = tmp_path / "nas"
    daemon.cli("backup", "target", "add", "nas", str(store), check=True)
    daemon.cli("backup", "create", "web", "--to", "nas", check=True)
    fill(disk, 20 * MiB, 480 * 1024)  # ~1 % of the disk
    done = daemon.cli("backup", "create", "web", "--to", "nas", check=True)
    assert "MiB new" in done.stdout
    with daemon.client() as c:
        calls = BackupCalls(c)
        first, second = calls.backups("nas", "web")
        assert first.stats.new_bytes >= 48 * MiB
        assert 480 * 1024 <= second.stats.new_bytes <= 2 * 4 * MiB  # one or two 4 MiB chunks
        assert second.parent == first.id
        assert "online" in first.consistency or "fake" in first.consistency

    daemon.cli("restore", second.id, "--to", "nas", "--as", "copy", check=True)
    assert disk_of(daemon, "copy").read_bytes() == disk.read_bytes()
    daemon.cli("start", "copy", check=True)

    assert daemon.cli("backup", "verify", "--to", "nas").returncode == 0
    manifests = {p.stem: json.loads(p.read_text()) for p in (store / "manifests").iterdir()}
    names = {bid: {c[1] for c in m["chunks"]} for bid, m in manifests.items()}
    only_first = sorted(names[first.id] - names[second.id])
    assert only_first
    chunk = store / "chunks" / only_first[0][:2] / only_first[0]
    chunk.write_bytes(chunk.read_bytes()[:-7] + b"garbage")
    bad = daemon.cli("backup", "verify", "--to", "nas")
    assert bad.returncode == 1
    assert f"DAMAGED {first.id}" in bad.stdout and second.id not in bad.stdout

    listed = daemon.cli("backup", "list", "--to", "nas", "web", "-f", "json", check=True)
    assert [b["id"] for b in json.loads(listed.stdout)] == [first.id, second.id]
    pruned = daemon.cli("backup", "prune", "--to", "nas", "web", "--keep-last", "1", check=True)
    assert "deleted 1" in pruned.stdout
    assert daemon.cli("backup", "verify", "--to", "nas").returncode == 0


def test_restore_refuses_a_running_instance_and_a_taken_name(daemon: Daemon,
                                                             tmp_path: Path) -> None:
    create(daemon, "db")
    daemon.cli("backup", "create", "db", "--to", str(tmp_path / "b"), check=True)
    with daemon.client() as c:
        (backup,) = BackupCalls(c).backups(str(tmp_path / "b"))
    running = daemon.cli("restore", backup.id, "--to", str(tmp_path / "b"))
    assert running.returncode == 1 and "stop it" in running.stderr
    taken = daemon.cli("restore", backup.id, "--to", str(tmp_path / "b"), "--as", "db")
    assert taken.returncode == 1 and "already exists" in taken.stderr
    daemon.cli("stop", "db", check=True)
    disk = disk_of(daemon, "db")
    before = disk.read_bytes()
    fill(disk, 0, MiB)
    daemon.cli("restore", backup.id, "--to", str(tmp_path / "b"), check=True)
    assert disk.read_bytes() == before


def test_snapshot_tree_branches_and_survives_deleting_the_middle(daemon: Daemon) -> None:
    disk = create(daemon, "app")
    fill(disk, 0, MiB)
    gen1 = disk.read_bytes()
    daemon.cli("snapshot", "create", "app", "one", check=True)
    fill(disk, 0, MiB)
    gen2 = disk.read_bytes()
    daemon.cli("snapshot", "create", "app", "two", "--memory", check=True)
    fill(disk, 0, MiB)
    daemon.cli("snapshot", "create", "app", "three", check=True)

    daemon.cli("snapshot", "revert", "app", "one", check=True)
    assert disk_of(daemon, "app").read_bytes() == gen1
    with daemon.client() as c:
        assert c.get_instance("app").state == "stopped"  # disk-only revert
    daemon.cli("snapshot", "create", "app", "branch", check=True)
    daemon.cli("snapshot", "delete", "app", "two", check=True)  # the middle of one-two-three

    daemon.cli("snapshot", "revert", "app", "three", check=True)
    daemon.cli("snapshot", "revert", "app", "one", check=True)
    with daemon.client() as c:
        tree = BackupCalls(c).snapshots("app")
    by_name = {s.name: s for s in tree.snapshots}
    assert by_name["three"].parent == by_name["one"].id  # took its deleted parent's parent
    assert by_name["branch"].parent == by_name["one"].id
    assert by_name["one"].current
    shown = daemon.cli("snapshot", "list", "app", check=True).stdout
    assert "one *" in shown and "branch" in shown and "two" not in shown
    dup = daemon.cli("snapshot", "create", "app", "one")
    assert dup.returncode == 1 and "already has" in dup.stderr
    del gen2


def test_memory_snapshot_revert_resumes_running(daemon: Daemon) -> None:
    create(daemon, "mem")
    daemon.cli("snapshot", "create", "mem", "live", "--memory", check=True)
    daemon.cli("stop", "mem", check=True)
    daemon.cli("snapshot", "revert", "mem", "live", check=True)
    with daemon.client() as c:
        assert c.get_instance("mem").state == "running"
    daemon.cli("stop", "mem", check=True)
    refused = daemon.cli("snapshot", "create", "mem", "x", "--memory")
    assert refused.returncode == 1 and "running" in refused.stderr


def test_memory_revert_refused_when_devices_changed_and_disk_only_works(
        daemon: Daemon) -> None:
    disk = create(daemon, "db1")
    fill(disk, 0, MiB)
    before = disk.read_bytes()
    daemon.cli("snapshot", "create", "db1", "before-upgrade", "--memory", check=True)
    daemon.cli("disk", "add", "db1", "data", "--size", "8M", check=True)  # next start
    fill(disk, 0, MiB)
    after = disk.read_bytes()
    refused = daemon.cli("snapshot", "revert", "db1", "before-upgrade")
    assert refused.returncode == 1
    assert "data disk 'data' added" in refused.stderr and "--disk-only" in refused.stderr
    assert disk.read_bytes() == after  # nothing changed
    with daemon.client() as c:
        assert c.get_instance("db1").state == "running"
    daemon.cli("snapshot", "revert", "db1", "before-upgrade", "--disk-only", check=True)
    assert disk_of(daemon, "db1").read_bytes() == before
    with daemon.client() as c:
        assert c.get_instance("db1").state == "stopped"
        assert BackupCalls(c).snapshots("db1").snapshots[0].current
    daemon.cli("disk", "remove", "db1", "data", check=True)  # the same devices again
    daemon.cli("snapshot", "revert", "db1", "before-upgrade", check=True)
    with daemon.client() as c:
        assert c.get_instance("db1").state == "running"


def test_failed_memory_load_boots_the_reverted_disk(daemon: Daemon) -> None:
    disk = create(daemon, "db2")
    fill(disk, 0, MiB)
    before = disk.read_bytes()
    daemon.cli("snapshot", "create", "db2", "s", "--memory", check=True)
    fill(disk, 0, MiB)
    with daemon.client() as c:
        snap_id = BackupCalls(c).snapshots("db2").snapshots[0].id
    (disk.parent / "snapshots" / snap_id / "state.json").write_text("not a state")
    failed = daemon.cli("snapshot", "revert", "db2", "s")
    assert failed.returncode == 1 and "memory state could not be restored" in failed.stderr
    assert "cold boot" in failed.stderr
    assert disk_of(daemon, "db2").read_bytes() == before  # reverted, not half-way
    with daemon.client() as c:
        assert c.get_instance("db2").state == "running"
        assert BackupCalls(c).snapshots("db2").snapshots[0].current


def test_backup_of_an_instance_with_data_disks_is_refused(daemon: Daemon,
                                                          tmp_path: Path) -> None:
    create(daemon, "dd")
    daemon.cli("disk", "add", "dd", "data", "--size", "8M", check=True)
    daemon.cli("backup", "target", "add", "nas", str(tmp_path / "nas"), check=True)
    refused = daemon.cli("backup", "create", "dd", "--to", "nas")
    assert refused.returncode == 1
    assert "backups cover the root disk only; data disks: data" in refused.stderr
    with daemon.client() as c:
        assert BackupCalls(c).backups("nas", "dd") == []


def test_kill_9_during_a_backup_leaves_no_partial_backup(daemon: Daemon,
                                                         tmp_path: Path) -> None:
    disk = create(daemon, "big", disk="160M")
    fill(disk, 0, 160 * MiB)
    target = str(tmp_path / "t")
    with daemon.client() as c:
        op = BackupCalls(c).backup("big", target)
        while c.get_operation(op.id).progress < 0.2:  # kill it while chunks are being stored
            time.sleep(0.02)
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait()
    again = start_daemon(daemon.state_dir)
    try:
        with again.client() as c:
            calls = BackupCalls(c)
            partial = calls.backups(target)
            assert c.get_operation(op.id).status in ("failure", "success")
            if c.get_operation(op.id).status == "failure":
                assert partial == []
            again.cli("backup", "create", "big", "--to", target, check=True)
            backups = calls.backups(target)
            assert len(backups) == len(partial) + 1
            assert not list(disk.parent.glob(".backup-*.img"))  # the copy beside the disk
        assert again.cli("backup", "verify", "--to", target).returncode == 0
        again.cli("stop", "big", check=True)
    finally:
        stop_daemon(again)


def test_verify_is_an_operation_with_a_report(daemon: Daemon, tmp_path: Path) -> None:
    disk = create(daemon, "ver")
    fill(disk, 0, 12 * MiB)
    target = str(tmp_path / "v")
    daemon.cli("backup", "create", "ver", "--to", target, check=True)
    with daemon.client() as c:
        calls = BackupCalls(c)
        [backup] = calls.backups(target, "ver")
        op = calls.verify(VerifyRequest(target=target))
        assert op.action == "verify"
        done = c.wait(op.id)
        assert done.status == "success", done.error
        report = calls.verify_report(op.id)
        assert report.ok and report.backups == 1 and report.chunks_checked == backup.chunks
        chunk = next(p for p in (Path(target) / "chunks").rglob("*") if p.is_file())
        chunk.unlink()
        again = calls.verify(VerifyRequest(target=target, backups=[backup.id]))
        damaged = calls.verify_report(c.wait(again.id).id)
        assert not damaged.ok and damaged.damaged_backups == [backup.id]
        assert damaged.damaged_chunks == {chunk.name: "missing"}
        operations = len(c.list_operations())
    refused = daemon.cli("backup", "verify", "--to", target, "no-such-backup")
    assert refused.returncode == 1 and "no backup 'no-such-backup'" in refused.stderr
    with daemon.client() as c:
        assert len(c.list_operations()) == operations  # refused before an operation existed


def test_schedules_list_remove_and_go_with_their_instance_and_target(
        daemon: Daemon, tmp_path: Path) -> None:
    create(daemon, "s1")
    create(daemon, "s2")
    daemon.cli("backup", "target", "add", "nas", str(tmp_path / "nas"), check=True)
    daemon.cli("backup", "target", "add", "usb", str(tmp_path / "usb"), check=True)
    daemon.cli("backup", "schedule", "set", "s1", "--to", "nas", "--daily", "02:00", check=True)
    daemon.cli("backup", "schedule", "set", "s2", "--to", "usb", "--daily", "03:00", check=True)
    shown = daemon.cli("backup", "schedule", "list", check=True).stdout
    assert "s1" in shown and "02:00" in shown and "usb" in shown
    wrong = daemon.cli("backup", "schedule", "remove", "s1", "--to", "usb")
    assert wrong.returncode == 1 and "no backup schedule for 's1' to 'usb'" in wrong.stderr
    daemon.cli("backup", "schedule", "remove", "s1", "--to", "nas", check=True)
    with daemon.client() as c:
        assert [s.instance for s in BackupCalls(c).schedules()] == ["s2"]
    daemon.cli("backup", "schedule", "set", "s1", "--to", "nas", "--daily", "02:00", check=True)
    daemon.cli("backup", "target", "remove", "usb", check=True)  # s2's schedule goes
    with daemon.client() as c:
        assert [s.instance for s in BackupCalls(c).schedules()] == ["s1"]

    daemon.cli("snapshot", "create", "s1", "snap", check=True)
    with daemon.client() as c:
        old_id = c.get_instance("s1").id
    daemon.cli("delete", "s1", "--force", check=True)
    with daemon.client() as c:
        assert BackupCalls(c).schedules() == []
    assert BackupStore(daemon.state_dir / "corral.db").snapshots(old_id) == []
    assert BackupStore(daemon.state_dir / "corral.db").head(old_id) is None
