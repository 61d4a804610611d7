"""Pairing and migration between two real corralds (fake drivers) over TLS on loopback.

The fake driver has no guest: its "disk" is a real sparse file and exec runs on the host in
the instance directory, so data written "inside" lands in root.img and its checksum proves
the copy. Failure injection: unreachable target, full target disk (at the check and
mid-copy), cancel, either corrald killed; each must leave the source as it was and nothing
on the target. A commit whose outcome the source cannot learn (the fault seam kills one
side) is kept unresolved: one copy runs, never two."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.client import migration as api
from corral.host.tls import fingerprint_of_pem
from corral.wire.models import InstanceModel
from tests.integration.conftest import Daemon, start_daemon, stop_daemon, write_fake_template


def _up(directory: Path) -> Daemon:
    directory.mkdir(parents=True, exist_ok=True)
    write_fake_template(directory / "templates")
    return start_daemon(directory)


@pytest.fixture
def hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Daemon, Daemon]]:
    monkeypatch.setenv("CORRAL_MIGRATION_LEASE", "2")  # the daemons inherit it
    a, b = _up(tmp_path / "a"), _up(tmp_path / "b")
    try:
        a.cli("remote", "add", "b", b.url, "--token", b.token, check=True)
        yield a, b
    finally:
        stop_daemon(a)
        stop_daemon(b)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _instance(d: Daemon, name: str) -> dict[str, object] | None:
    listed = json.loads(d.cli("list", "--format", "json", check=True).stdout)
    return next((i for i in listed if i["name"] == name), None)


def _disk(d: Daemon, instance_id: int) -> Path:
    """Where the root disk is: a storage pool's volume, or the instance directory."""
    found = [p for p in d.state_dir.rglob("*.img") if str(instance_id) in p.parent.name
             or p.parent.name == str(instance_id)]
    assert len(found) == 1, found
    return found[0]


def _make(d: Daemon, name: str, mib: int = 4, start: bool = True) -> Path:
    d.cli("create", name, "--type", "ct", "--disk", "256M", *(["--start"] if start else []),
          check=True)
    info = _instance(d, name)
    assert info is not None
    disk = _disk(d, int(str(info["id"])))
    if mib:  # "inside the instance": the fake driver's disk is this file
        with disk.open("r+b") as image:
            image.seek(3 * 1024**2)
            image.write(os.urandom(mib * 1024**2))
    return disk


def _nothing_on(d: Daemon, name: str) -> None:
    assert _instance(d, name) is None
    assert list((d.state_dir / "instances").iterdir()) == []


def test_pairing_pins_the_certificate_and_checks_the_token(tmp_path: Path) -> None:
    a, b = _up(tmp_path / "a"), _up(tmp_path / "b")
    try:
        pinned = fingerprint_of_pem((b.state_dir / "tls" / "cert.pem").read_text())
        wrong = "sha256:" + "0" * 64
        said = a.cli("remote", "add", "b", b.url, "--token", b.token, "--fingerprint", wrong)
        assert said.returncode != 0 and "refusing to pair" in said.stderr
        said = a.cli("remote", "add", "b", b.url, "--token", "not-the-token")
        assert said.returncode != 0 and "refused the token" in said.stderr
        said = a.cli("remote", "add", "me", a.url, "--token", a.token)  # itself: refused
        assert said.returncode != 0 and "is this host" in said.stderr, said.stderr
        a.cli("remote", "add", "b", b.url, "--token", b.token, "--fingerprint", pinned,
              check=True)
        listed = json.loads(a.cli("remote", "list", "-f", "json", check=True).stdout)
        assert [(r["name"], r["fingerprint"]) for r in listed] == [("b", pinned)]
        # join: both directions in one command
        b.cli("host", "join", "a2", a.url, "--token", a.token, "--as", "b2", check=True)
        names_a = {r["name"] for r in json.loads(a.cli("remote", "list", "-f", "json").stdout)}
        assert names_a == {"b", "b2"}
    finally:
        stop_daemon(a)
        stop_daemon(b)


def test_running_container_moves_with_its_identity(hosts: tuple[Daemon, Daemon]) -> None:
    a, b = hosts
    for d in (a, b):
        d.cli("network", "create", "lan", "--subnet", "10.77.0.0/24", check=True)
    disk = _make(a, "web1", start=False)
    a.cli("nic", "add", "web1", "--network", "lan", "--ip", "10.77.0.9", check=True)
    a.cli("set", "web1", "cpus=2", check=True)
    a.cli("start", "web1", check=True)
    before = _instance(a, "web1")
    nics_before = json.loads(a.cli("nic", "list", "web1", "-f", "json", check=True).stdout)
    digest = _digest(disk)

    said = a.cli("migrate", "web1", "b")
    assert said.returncode == 0, said.stderr
    assert "path: precopy" in said.stdout and "downtime" in said.stdout

    after = _instance(b, "web1")
    assert after is not None and before is not None
    assert (after["id"], after["state"], after["resources"]) == (
        before["id"], "running", before["resources"])
    nics_after = json.loads(b.cli("nic", "list", "web1", "-f", "json", check=True).stdout)
    key = [(n["mac"], n["addresses"], n["network"]) for n in nics_before]
    assert [(n["mac"], n["addresses"], n["network"]) for n in nics_after] == key
    assert _digest(_disk(b, int(str(after["id"])))) == digest
    _nothing_on(a, "web1")
    record = json.loads(a.cli("migration", "list", "-f", "json", check=True).stdout)[0]
    assert (record["status"], record["path"], record["direction"]) == ("success", "precopy",
                                                                       "out")


def test_stopped_vm_moves_offline_and_an_id_clash_takes_the_next_id(
    hosts: tuple[Daemon, Daemon],
) -> None:
    a, b = hosts
    b.cli("create", "other", "--type", "vm", check=True)  # takes id 101 on b
    a.cli("create", "db1", "--type", "vm", check=True)
    said = a.cli("migrate", "db1", "b", check=True)
    assert "path: offline" in said.stdout and "id changed 101 -> 102" in said.stdout
    moved = _instance(b, "db1")
    assert moved is not None and (moved["id"], moved["state"]) == (102, "stopped")


def test_unreachable_target_leaves_the_source_running(hosts: tuple[Daemon, Daemon]) -> None:
    a, b = hosts
    _make(a, "web1")
    stop_daemon(b)
    said = a.cli("migrate", "web1", "b")
    assert said.returncode != 0 and "unreachable" in said.stderr
    assert (_instance(a, "web1") or {})["state"] == "running"


def test_full_target_disk_is_refused(hosts: tuple[Daemon, Daemon], tmp_path: Path) -> None:
    """Refused at the target's free-space check; then the target's disk fills after that
    check (another writer, mid-copy): the migration fails with the target's words, the
    source runs on, the target keeps nothing (no row, no image, no directory), and the same
    migration succeeds once there is room."""
    a, b = hosts
    stop_daemon(b)
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(small)], check=True)
    try:
        write_fake_template(small / "templates")
        b2 = start_daemon(small)
        try:
            a.cli("remote", "remove", "b", check=True)
            a.cli("remote", "add", "b", b2.url, "--token", b2.token, check=True)
            disk = _make(a, "web1", mib=16)
            digest = _digest(disk)
            filler = small / "filler"

            def fill(leave: int) -> None:
                with filler.open("wb") as f:  # at once: the copy must still be running
                    os.posix_fallocate(f.fileno(), 0, shutil.disk_usage(small).free - leave)

            fill(24 * 1024**2)  # the instance needs its 16+ MiB and a 16 MiB margin
            said = a.cli("migrate", "web1", "b")
            assert said.returncode != 0 and "not enough disk space" in said.stderr
            assert (_instance(a, "web1") or {})["state"] == "running"
            _nothing_on(b2, "web1")
            filler.unlink()
            op = _start_slow(a, "web1", "1M")  # reserved: the free-space check passed
            fill(4096)
            said = a.cli("operation", "wait", op)
            assert said.returncode != 0 and "disk is full" in said.stderr, said.stderr
            assert (_instance(a, "web1") or {})["state"] == "running"
            assert _digest(disk) == digest
            _nothing_on(b2, "web1")
            assert [p.name for p in small.iterdir()
                    if p.suffix == ".img" or p.name.startswith(".tmp")] == []
            filler.unlink()
            a.cli("migrate", "web1", "b", check=True)
            assert (_instance(b2, "web1") or {})["state"] == "running"
        finally:
            stop_daemon(b2)
    finally:
        subprocess.run(["umount", str(small)], check=True)


def _start_slow(a: Daemon, name: str, bandwidth: str = "2M") -> str:
    """A migration throttled to 2 MiB/s over 16 MiB of data: seconds to act in."""
    op = a.cli("migrate", name, "b", "--bandwidth", bandwidth, "--no-wait",
               check=True).stdout.strip()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        shown = json.loads(a.cli("operation", "show", op, "-f", "json", check=True).stdout)
        if "pre-copy" in shown["phase"]:
            return op
        time.sleep(0.1)
    raise AssertionError(f"the migration never reached the disk copy: {shown}")


def test_cancel_rolls_back(hosts: tuple[Daemon, Daemon]) -> None:
    a, b = hosts
    # 32 s of copy at 1 MiB/s: at load ~17 the 8 s of the default ended before the CLI's
    # cancel ran (a cancel ends it at once, so the window costs nothing when it works)
    _make(a, "web1", mib=32)
    op = _start_slow(a, "web1", bandwidth="1M")
    a.cli("operation", "cancel", op, check=True)
    said = a.cli("operation", "wait", op)
    assert said.returncode != 0 and "cancelled" in said.stderr
    assert (_instance(a, "web1") or {})["state"] == "running"
    _nothing_on(b, "web1")
    record = json.loads(a.cli("migration", "show", op, "-f", "json", check=True).stdout)
    assert (record["status"], record["phase"]) == ("cancelled", "rolled back")


def test_target_corrald_killed(hosts: tuple[Daemon, Daemon]) -> None:
    a, b = hosts
    _make(a, "web1", mib=16)
    op = _start_slow(a, "web1")
    stop_daemon(b, signal.SIGKILL)
    said = a.cli("operation", "wait", op)
    assert said.returncode != 0 and "unreachable" in said.stderr
    assert (_instance(a, "web1") or {})["state"] == "running"
    b2 = start_daemon(b.state_dir)  # its restart removes the half-received instance
    try:
        _nothing_on(b2, "web1")
    finally:
        stop_daemon(b2)


def test_source_corrald_killed(hosts: tuple[Daemon, Daemon]) -> None:
    a, b = hosts
    _make(a, "web1", mib=16)
    _start_slow(a, "web1")
    stop_daemon(a, signal.SIGKILL)
    deadline = time.monotonic() + 15  # the target's lease (2 s here) runs out
    while _instance(b, "web1") is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    _nothing_on(b, "web1")
    a2 = start_daemon(a.state_dir)
    try:
        assert (_instance(a2, "web1") or {})["state"] == "running"
        record = json.loads(a2.cli("migration", "list", "-f", "json", check=True).stdout)[0]
        assert (record["status"], record["phase"]) == ("failure", "rolled back")
    finally:
        stop_daemon(a2)


def _tree(d: Daemon, name: str) -> list[dict[str, object]]:
    said = json.loads(d.cli("snapshot", "list", name, "-f", "json", check=True).stdout)
    return [{k: s[k] for k in ("name", "parent", "memory", "current", "created_at",
                                "consistency")} for s in said["snapshots"]]


def _snapshot_rows(d: Daemon) -> int:
    import sqlite3

    with sqlite3.connect(d.state_dir / "corral.db") as db:
        return int(db.execute("SELECT count(*) FROM snapshots").fetchone()[0])


def test_snapshot_tree_moves_with_the_instance_and_reverts_there(
    hosts: tuple[Daemon, Daemon],
) -> None:
    a, b = hosts
    disk = _make(a, "app")
    a.cli("snapshot", "create", "app", "one", check=True)
    at_one = _digest(disk)
    with disk.open("r+b") as image:  # the guest changes its disk after "one"
        image.seek(40 * 1024**2)
        image.write(os.urandom(2 * 1024**2))
    at_two = _digest(disk)
    a.cli("snapshot", "create", "app", "two", "--memory", check=True)
    a.cli("snapshot", "revert", "app", "one", check=True)  # head back at "one" …
    a.cli("start", "app", check=True)
    a.cli("snapshot", "create", "app", "branch", check=True)  # … so the tree branches
    tree = _tree(a, "app")
    assert [(s["name"], s["current"]) for s in tree] == [
        ("one", False), ("two", False), ("branch", True)]

    said = a.cli("migrate", "app", "b")
    assert said.returncode == 0, said.stderr

    assert _tree(b, "app") == tree
    assert _snapshot_rows(a) == 0  # the source forgot the rows with the instance
    moved = _instance(b, "app")
    assert moved is not None and moved["state"] == "running"
    with _disk(b, int(str(moved["id"]))).open("r+b") as image:
        image.seek(40 * 1024**2)
        image.write(b"\0" * 1024**2)  # differs from every snapshot
    b.cli("snapshot", "revert", "app", "two", check=True)  # memory: resumes running
    reverted = _instance(b, "app")
    assert reverted is not None and reverted["state"] == "running"
    assert _digest(_disk(b, int(str(moved["id"])))) == at_two
    b.cli("snapshot", "revert", "app", "one", check=True)  # disk only: left stopped
    assert _digest(_disk(b, int(str(moved["id"])))) == at_one
    assert [(s["name"], s["current"]) for s in _tree(b, "app")] == [
        ("one", True), ("two", False), ("branch", False)]


def test_data_disks_move_with_a_running_container(hosts: tuple[Daemon, Daemon]) -> None:
    a, b = hosts
    _make(a, "app", start=False)
    a.cli("disk", "add", "app", "data", "--size", "32M", "--path", "/srv/data", check=True)
    disks = json.loads(a.cli("disk", "list", "app", "-f", "json", check=True).stdout)
    data = Path(next(d["path"] for d in disks if d["name"] == "data"))
    with data.open("r+b") as image:  # "written inside": past the ext4 metadata
        image.seek(20 * 1024**2)
        image.write(os.urandom(3 * 1024**2))
    digest, size = _digest(data), data.stat().st_size
    a.cli("start", "app", check=True)

    said = a.cli("migrate", "app", "b")
    assert said.returncode == 0, said.stderr
    assert "path: precopy" in said.stdout

    moved = json.loads(b.cli("disk", "list", "app", "-f", "json", check=True).stdout)
    assert [(d["name"], d["size"], d["mount"]) for d in moved] == [
        (d["name"], d["size"], d["mount"]) for d in disks]
    there = Path(next(d["path"] for d in moved if d["name"] == "data"))
    assert _digest(there) == digest
    assert there.stat().st_size == size
    assert not data.exists()
    _nothing_on(a, "app")
    running = _instance(b, "app")
    assert running is not None and running["state"] == "running"


def _port(d: Daemon) -> int:
    return int(d.url.rsplit(":", 1)[1])


def _here(d: Daemon, name: str) -> InstanceModel | None:
    """``name`` on ``d`` (through the client library: no CLI process per look)."""
    with d.client() as c:
        return next((i for i in c.list_instances() if i.name == name), None)


def _unresolved(a: Daemon, name: str) -> None:
    """``name`` is kept stopped on the source, says why, and refuses to start."""
    info = _here(a, name)
    assert info is not None and info.state == "stopped", info
    assert "migration to b unresolved" in (info.stop_reason or ""), info
    said = a.cli("start", name)
    told = " ".join(said.stderr.split())
    assert said.returncode != 0 and f"cannot start '{name}'" in told, told
    assert "--keep-source|--keep-target" in told, told
    with a.client() as c:
        assert api.list_migrations(c)[0].status == "unresolved"


def test_an_unknown_commit_outcome_is_kept_unresolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Split brain: the source asked the target to commit and cannot learn whether it did
    (the target dies while committing; the source dies after the commit and finds the target
    down at its restart). Neither rolls back: the instance is kept stopped and marked until
    the target answers (asked again every second here) or an admin decides."""
    from corral.services.faults import ENV

    monkeypatch.setenv("CORRAL_MIGRATION_LEASE", "2")
    monkeypatch.setenv("CORRAL_MIGRATION_RESOLVE_INTERVAL", "1")
    for side in ("a", "b"):
        (tmp_path / side).mkdir()
        write_fake_template(tmp_path / side / "templates")
    monkeypatch.setenv(ENV, "migrate.source.after_commit=kill")
    a = start_daemon(tmp_path / "a", options=("--test-faults",))
    monkeypatch.setenv(ENV, "migrate.target.committing=kill")
    b = start_daemon(tmp_path / "b", options=("--test-faults",))
    monkeypatch.delenv(ENV)
    try:
        a.cli("remote", "add", "b", b.url, "--token", b.token, check=True)
        disk = _make(a, "web1")
        digest = _digest(disk)
        # 1. the target dies while committing: the source's run cannot ask it
        said = a.cli("migrate", "web1", "b")
        told = " ".join(said.stderr.split())
        assert said.returncode != 0 and "cannot be asked whether it committed" in told, told
        assert "kept stopped on this host" in told, told
        assert b.process.wait(15) == -signal.SIGKILL
        _unresolved(a, "web1")
        said = a.cli("migrate", "web1", "b")
        assert said.returncode != 0 and "cannot migrate 'web1'" in said.stderr, said.stderr
        said = a.cli("migration", "resolve", "web1", "--keep-source")
        assert said.returncode == 0 and "failure" in said.stdout, said.stdout + said.stderr
        back = _here(a, "web1")
        assert back is not None and back.state == "running"  # it ran: it runs again
        assert _digest(disk) == digest
        b = start_daemon(b.state_dir, port=_port(b))  # its restart drops the half-commit
        assert _here(b, "web1") is None
        assert list((b.state_dir / "instances").iterdir()) == []

        # 2. the source dies after the commit and finds the target down at its restart
        a.cli("migrate", "web1", "b")
        assert a.process.wait(15) == -signal.SIGKILL
        there = _here(b, "web1")
        assert there is not None and there.state == "running"
        stop_daemon(b)
        a = start_daemon(a.state_dir)
        _unresolved(a, "web1")
        b = start_daemon(b.state_dir, port=_port(b))  # back: the next question settles it
        deadline = time.monotonic() + 20
        while _here(a, "web1") is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _here(a, "web1") is None
        assert list((a.state_dir / "instances").iterdir()) == []
        with a.client() as c:
            record = api.list_migrations(c)[0]
        assert (record.status, record.details["resolved"]) == ("success", "b committed it")
        moved = _here(b, "web1")
        assert moved is not None and moved.state == "running"
        assert _digest(_disk(b, moved.id)) == digest
    finally:
        stop_daemon(a)
        stop_daemon(b)
