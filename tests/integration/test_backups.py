"""Snapshots and backups through a real corrald (fake driver), its API and the CLI."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from corral.client.backups import BackupCalls
from corral.state.backupstore import BackupStore
from corral.state.database import Database
from corral.wire.backups import VerifyRequest
from corral.wire.storage import DiskModel
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
    said = daemon.cli("snapshot", "revert", "mem", "live", check=True).stdout
    assert "and the memory: running again" in said and "processes resumed" in said, said
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
    said = daemon.cli("snapshot", "revert", "db1", "before-upgrade", "--disk-only",
                      check=True).stdout
    assert "left stopped (disk only)" in said and "memory" not in said, said
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


def disks_of(daemon: Daemon, name: str) -> dict[str, DiskModel]:
    with daemon.client() as c:
        return {d.name: d for d in c.list_disks(name)}


def data_of(daemon: Daemon, name: str, disk: str) -> bytes:
    return Path(disks_of(daemon, name)[disk].path).read_bytes()


def test_snapshots_cover_data_disks_in_their_pools(daemon: Daemon, tmp_path: Path) -> None:
    """Every data disk is in a snapshot, its copy beside it in its own pool; a revert brings
    back every disk (one removed since is registered again), keeps one added later, and
    deleting a snapshot deletes its copies in every pool."""
    d = daemon
    root = create(d, "multi", start=False)
    d.cli("storage", "create", "extra", "--driver", "dir", "--path", str(tmp_path / "extra"),
          check=True)
    d.cli("disk", "add", "multi", "data", "--size", "8M", "--path", "/srv/data", check=True)
    d.cli("disk", "add", "multi", "logs", "--size", "8M", "--pool", "extra", check=True)
    disks = disks_of(d, "multi")
    data, logs = Path(disks["data"].path), Path(disks["logs"].path)
    d.cli("start", "multi", check=True)

    def generation() -> dict[str, bytes]:
        for path in (root, data, logs):
            fill(path, MiB, MiB)
        return {"root": root.read_bytes(), "data": data.read_bytes(), "logs": logs.read_bytes()}

    gen1 = generation()
    d.cli("snapshot", "create", "multi", "s1", check=True)
    with d.client() as c:
        s1 = BackupCalls(c).snapshots("multi").snapshots[0].id
    assert (root.parent / "snapshots" / s1 / "data.img").read_bytes() == gen1["data"]
    assert (logs.parent / "snapshots" / s1 / "logs.img").read_bytes() == gen1["logs"]
    assert logs.parent != root.parent  # the copy is in the disk's own pool
    gen2 = generation()
    d.cli("snapshot", "create", "multi", "s2", check=True)
    generation()

    said = d.cli("snapshot", "revert", "multi", "s1", check=True).stdout
    assert "data disks data, logs" in said
    now = {"root": root.read_bytes(), "data": data.read_bytes(), "logs": logs.read_bytes()}
    assert now == gen1

    d.cli("disk", "remove", "multi", "logs", check=True)  # stopped by the revert
    d.cli("disk", "add", "multi", "late", "--size", "8M", check=True)
    late = Path(disks_of(d, "multi")["late"].path)
    fill(late, 0, MiB)
    late_bytes = late.read_bytes()
    said = d.cli("snapshot", "revert", "multi", "s2", check=True).stdout
    assert "registered again: logs" in said and "kept as they are" in said and "late" in said
    after = disks_of(d, "multi")
    assert set(after) == {"root", "data", "logs", "late"}
    assert (after["logs"].pool, after["data"].mount) == ("extra", "/srv/data")
    assert Path(after["logs"].path).read_bytes() == gen2["logs"]
    assert data.read_bytes() == gen2["data"] and root.read_bytes() == gen2["root"]
    assert late.read_bytes() == late_bytes  # a disk added after the snapshot is untouched

    d.cli("snapshot", "delete", "multi", "s1", check=True)  # s2's parent: s2 stays whole
    assert not (root.parent / "snapshots" / s1).exists()
    assert not (logs.parent / "snapshots" / s1).exists()
    generation()
    d.cli("snapshot", "revert", "multi", "s2", check=True)
    assert Path(disks_of(d, "multi")["logs"].path).read_bytes() == gen2["logs"]
    d.cli("delete", "multi", check=True)
    assert not logs.parent.exists()  # snapshot copies in the other pool went with it


def test_backup_covers_data_disks_restore_recreates_them(daemon: Daemon,
                                                         tmp_path: Path) -> None:
    d = daemon
    root = create(d, "files", start=False)
    d.cli("disk", "add", "files", "data", "--size", "12M", "--path", "/srv/data", check=True)
    d.cli("disk", "add", "files", "spare", "--size", "8M", check=True)
    data = Path(disks_of(d, "files")["data"].path)
    fill(root, 0, 4 * MiB)
    fill(data, 0, 8 * MiB)
    d.cli("start", "files", check=True)
    target = str(tmp_path / "nas")
    d.cli("backup", "create", "files", "--to", target, check=True)
    first = {"root": root.read_bytes(), "data": data.read_bytes()}
    fill(data, 4 * MiB, 64 * 1024)  # one chunk of the data disk changes
    d.cli("backup", "create", "files", "--to", target, check=True)
    second = {"root": root.read_bytes(), "data": data.read_bytes()}
    with d.client() as c:
        b1, b2 = BackupCalls(c).backups(target, "files")
    assert [(x.name, x.size, x.mount) for x in b2.disks] == [
        ("root", 64 * MiB, None), ("data", 12 * MiB, "/srv/data"), ("spare", 8 * MiB, None)]
    assert b2.stats.new_bytes == 4 * MiB  # only the changed chunk of the data disk is new
    info = d.cli("backup", "info", b2.id, "--to", target, check=True).stdout
    assert "disk data" in info and "mounted at /srv/data" in info and "disk spare" in info

    d.cli("restore", b2.id, "--to", target, "--as", "files2", check=True)
    copy = disks_of(d, "files2")
    assert {n: (x.size, x.mount) for n, x in copy.items()} == {
        "root": (64 * MiB, None), "data": (12 * MiB, "/srv/data"), "spare": (8 * MiB, "/mnt/spare")}
    assert Path(copy["data"].path).read_bytes() == second["data"]
    assert Path(copy["root"].path).read_bytes() == second["root"]
    assert Path(copy["spare"].path).read_bytes() == Path(
        disks_of(d, "files")["spare"].path).read_bytes()
    d.cli("start", "files2", check=True)

    # In place, over the stopped original: a removed disk comes back, an added one stays.
    d.cli("stop", "files", check=True)
    d.cli("disk", "remove", "files", "data", check=True)
    d.cli("disk", "add", "files", "new", "--size", "8M", check=True)
    said = d.cli("restore", b1.id, "--to", target, check=True).stdout
    assert "kept as they are (not in the backup): new" in said
    now = disks_of(d, "files")
    assert set(now) == {"root", "data", "spare", "new"} and now["data"].mount == "/srv/data"
    assert Path(now["data"].path).read_bytes() == first["data"]
    assert root.read_bytes() == first["root"]

    # verify covers data-disk chunks: damage one only the data disk has
    store = Path(target)
    manifest = json.loads((store / "manifests" / f"{b2.id}.json").read_text())
    root_names = {c[1] for c in manifest["chunks"]}
    data_only = sorted({c[1] for disk in manifest["disks"] for c in disk["chunks"]} - root_names)
    chunk = store / "chunks" / data_only[0][:2] / data_only[0]
    chunk.write_bytes(chunk.read_bytes()[:-7] + b"garbage")
    bad = d.cli("backup", "verify", "--to", target)
    assert bad.returncode == 1 and f"DAMAGED {b2.id}" in bad.stdout
    d.cli("delete", "--force", "files", "files2", check=True)


def test_a_failed_restore_as_new_leaves_nothing(daemon: Daemon, tmp_path: Path) -> None:
    root = create(daemon, "gone", start=False)
    daemon.cli("disk", "add", "gone", "data", "--size", "8M", check=True)
    fill(root, 0, MiB)
    target = tmp_path / "nas"
    daemon.cli("backup", "create", "gone", "--to", str(target), check=True)
    with daemon.client() as c:
        (backup,) = BackupCalls(c).backups(str(target))
    manifest = json.loads((target / "manifests" / f"{backup.id}.json").read_text())
    for name in {c[1] for c in manifest["chunks"]}:
        (target / "chunks" / name[:2] / name).unlink()  # the root disk's chunks are lost
    failed = daemon.cli("restore", backup.id, "--to", str(target), "--as", "half")
    assert failed.returncode == 1
    with daemon.client() as c:
        assert "half" not in {i.name for i in c.list_instances()}
    assert len(list(daemon.state_dir.glob("pools/*/volumes/*/data.img"))) == 1


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
    deleted = daemon.cli("delete", "s1", "--force", check=True).stdout
    assert "Deleted s1: removed its backup schedule (daily 02:00 " in deleted
    assert " to nas)" in deleted
    with daemon.client() as c:
        assert BackupCalls(c).schedules() == []
    store = BackupStore(Database.open(daemon.state_dir / "corral.db"))
    assert store.snapshots(old_id) == []
    assert store.head(old_id) is None


def test_a_schedule_whose_time_passed_today_runs_tomorrow_in_its_zone(
        daemon: Daemon, tmp_path: Path) -> None:
    create(daemon, "s1")
    daemon.cli("backup", "target", "add", "nas", str(tmp_path / "nas"), check=True)
    now = datetime.now(UTC)
    passed = (now - timedelta(minutes=2)).strftime("%H:%M")
    said = daemon.cli("backup", "schedule", "set", "s1", "--to", "nas", "--daily", passed,
                      "--tz", "UTC", check=True).stdout
    with daemon.client() as c:
        (schedule,) = BackupCalls(c).schedules()
        assert BackupCalls(c).backups("nas") == []
        assert [o for o in c.list_operations() if o.action == "backup"] == []
    next_run = datetime.fromisoformat(schedule.next_run)
    assert schedule.tz == "UTC" and schedule.last_run is None
    assert next_run.strftime("%H:%M") == passed
    assert timedelta(hours=23) < next_run - now <= timedelta(days=1)  # tomorrow, not now
    assert f"daily backup at {passed} UTC to nas; next run {next_run:%Y-%m-%d %H:%M}" in said
    shown = daemon.cli("backup", "schedule", "list", check=True).stdout
    assert f"{passed} UTC" in shown and f"{next_run:%Y-%m-%d %H:%M} +00:00" in shown

    berlin = daemon.cli("backup", "schedule", "set", "s1", "--to", "nas", "--daily", "02:00",
                        "--tz", "Europe/Berlin", check=True).stdout
    assert "daily backup at 02:00 Europe/Berlin to nas; next run " in berlin
    assert " 02:00 +01:00" in berlin or " 02:00 +02:00" in berlin
    bad = daemon.cli("backup", "schedule", "set", "s1", "--to", "nas", "--daily", "02:00",
                     "--tz", "Mars/Olympus")
    assert bad.returncode == 1 and "'Mars/Olympus' is not a known IANA zone" in bad.stderr
    with daemon.client() as c:
        assert [s.tz for s in BackupCalls(c).schedules()] == ["Europe/Berlin"]
