"""Data disks (`corral disk add|remove|resize|list`), `--pool` on create and VMs from foreign
images through corrald (fake drivers: real pools, real ext4 images, real qemu-img)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from corral.client import ApiError
from corral.host.diskgrow import filesystem_bytes
from corral.wire.models import CreateRequest
from corral.wire.storage import AddDiskRequest, CreatePoolRequest
from tests.integration.conftest import Daemon

MiB = 1024**2


def _create(daemon: Daemon, name: str, kind: str = "ct", **extra: str) -> None:
    with daemon.client() as c:
        c.wait(c.create_instance(CreateRequest(name=name, type=kind, template="tiny",
                                               **extra)).id)  # type: ignore[arg-type]


def test_add_grow_remove_a_data_disk_on_a_stopped_container(daemon: Daemon) -> None:
    _create(daemon, "web1")
    out = daemon.cli("disk", "add", "web1", "data", "--size", "32M", "--path", "/srv/data",
                     check=True)
    assert "Disk data of web1 added: done" in out.stdout
    with daemon.client() as c:
        disks = {d.name: d for d in c.list_disks("web1")}
    assert set(disks) == {"root", "data"}
    data = disks["data"]
    assert (data.size, data.mount, data.root) == (32 * MiB, "/srv/data", False)
    assert data.filesystem == 32 * MiB  # an ext4 filling the image
    assert Path(data.path).parent == Path(disks["root"].path).parent  # the root's pool
    blkid = subprocess.run(["blkid", "-o", "export", data.path], capture_output=True,
                           text=True, check=True).stdout
    assert "TYPE=ext4" in blkid and "LABEL=data" in blkid

    # grow while stopped: image and filesystem at once; shrinking is refused
    out = daemon.cli("disk", "resize", "web1", "data", "48M", check=True)
    assert "grown to 48M: done" in out.stdout
    assert filesystem_bytes(Path(data.path)) == 48 * MiB
    proc = daemon.cli("disk", "resize", "web1", "data", "16M")
    assert proc.returncode == 1 and "cannot shrink" in proc.stderr
    assert Path(data.path).stat().st_size == 48 * MiB

    listed = json.loads(daemon.cli("disk", "list", "web1", "-f", "json", check=True).stdout)
    assert [d["name"] for d in listed] == ["root", "data"]

    daemon.cli("disk", "remove", "web1", "data", check=True)
    assert not Path(data.path).exists()
    with daemon.client() as c:
        assert [d.name for d in c.list_disks("web1")] == ["root"]


def test_bad_requests_change_nothing(daemon: Daemon) -> None:
    _create(daemon, "web1")
    _create(daemon, "vm1", "vm")
    cases = [
        (("disk", "add", "web1", "root", "--size", "8M"), "root disk's name"),
        (("disk", "add", "web1", "Bad_Name", "--size", "8M"), "not valid"),
        (("disk", "add", "web1", "data", "--size", "1K"), "at least 4 MiB"),
        (("disk", "add", "web1", "data", "--size", "8M", "--path", "/etc"), "system directory"),
        (("disk", "add", "vm1", "data", "--size", "8M", "--path", "/srv"), "containers"),
        (("disk", "add", "web1", "data", "--size", "8M", "--pool", "nope"), "no storage pool"),
        (("disk", "remove", "web1", "root"), "cannot be removed"),
        (("disk", "remove", "web1", "nope"), "no data disk 'nope'"),
        (("disk", "resize", "web1", "root", "1G"), "corral set web1 disk="),
    ]
    for args, words in cases:
        proc = daemon.cli(*args)
        assert proc.returncode == 1, args
        assert words in proc.stderr, (args, proc.stderr)
    daemon.cli("disk", "add", "web1", "data", "--size", "8M", check=True)
    dup = daemon.cli("disk", "add", "web1", "data", "--size", "8M")
    assert dup.returncode == 1 and "already has a disk named 'data'" in dup.stderr
    with daemon.client() as c:
        assert [d.name for d in c.list_disks("web1")] == ["root", "data"]
        assert [d.name for d in c.list_disks("vm1")] == ["root"]
        volumes = Path(c.list_disks("web1")[0].path).parent
    assert sorted(p.name for p in volumes.iterdir()) == ["data.img", "root.img"]


def test_running_instance_without_hotplug_gets_the_disk_at_next_start(daemon: Daemon) -> None:
    _create(daemon, "web1", start=True)  # type: ignore[arg-type]
    out = daemon.cli("disk", "add", "web1", "data", "--size", "8M", check=True)
    assert "at the next start" in out.stdout
    proc = daemon.cli("disk", "remove", "web1", "data")
    assert proc.returncode == 1 and "running; stop it" in proc.stderr
    daemon.cli("stop", "web1", check=True)
    daemon.cli("disk", "remove", "web1", "data", check=True)


def test_disks_in_another_pool_and_delete_removes_them(daemon: Daemon, tmp_path: Path) -> None:
    with daemon.client() as c:
        c.create_pool(CreatePoolRequest(name="fast", driver="dir", path=str(tmp_path / "fast")))
    _create(daemon, "web1", pool="fast")
    with daemon.client() as c:
        root = c.list_disks("web1")[0]
        assert root.pool == "fast" and root.path.startswith(str(tmp_path / "fast"))
        change = c.add_disk("web1", AddDiskRequest(name="logs", size="8M", pool="default"))
        assert change.applied == "now"
        logs = next(d for d in c.list_disks("web1") if d.name == "logs")
        assert logs.pool == "default"
        with pytest.raises(ApiError, match="holds disks"):
            c.delete_pool("fast")
        c.wait(c.delete_instance("web1").id)
        c.delete_pool("fast")
    assert not Path(logs.path).exists() and not Path(root.path).exists()
    proc = daemon.cli("create", "web2", "--type", "ct", "--pool", "nope")
    assert proc.returncode == 1 and "no storage pool 'nope'" in proc.stderr


def test_vm_from_a_foreign_image_and_from_an_iso(daemon: Daemon, tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    with raw.open("wb") as f:
        f.write(b"\xeb\x63" + b"\0" * 508 + b"\x55\xaa")  # a boot sector
        f.truncate(16 * MiB)
    qcow = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(qcow)], check=True)
    daemon.cli("create", "img1", "--type", "vm", "--image", str(qcow), check=True)
    daemon.cli("create", "img2", "--type", "vm", "--image", str(raw), "--disk", "32M",
               check=True)
    iso = tmp_path / "inst.iso"
    iso.write_bytes(b"\0" * 4096)
    daemon.cli("create", "inst", "--type", "vm", "--iso", str(iso), "--disk", "64M", check=True)
    with daemon.client() as c:
        one = c.list_disks("img1")[0]
        two = c.list_disks("img2")[0]
        blank = c.list_disks("inst")[0]
        assert c.get_instance("img1").template == "@image"
    assert Path(one.path).read_bytes()[:512] == raw.read_bytes()[:512]  # converted to raw
    assert one.size == 16 * MiB and two.size == 32 * MiB and blank.size == 64 * MiB
    assert blank.allocated == 0
    assert (daemon.state_dir / "instances" / str(
        json.loads(daemon.cli("info", "inst", "-f", "json").stdout)["id"]) / "cdrom.iso"
    ).read_bytes() == iso.read_bytes()
    refused = [
        (("create", "x1", "--type", "ct", "--image", str(raw)), "use --type vm"),
        (("create", "x2", "--type", "vm", "--image", str(raw), "--disk", "8M"), "smaller"),
        (("create", "x3", "--type", "vm", "--image", str(tmp_path / "none")), "not a file"),
        (("convert", "img1", "--to", "ct"), "foreign disk image"),
    ]
    for args, words in refused:
        proc = daemon.cli(*args)
        assert proc.returncode == 1 and words in proc.stderr, (args, proc.stderr)


def test_data_disks_count_against_the_disk_policy(daemon: Daemon) -> None:
    _create(daemon, "web1")
    with daemon.client() as c:
        before = c.host_info().capacity["disk"]["allocated"]
    daemon.cli("disk", "add", "web1", "data", "--size", "32M", check=True)
    with daemon.client() as c:
        assert c.host_info().capacity["disk"]["allocated"] == before + 32 * MiB
    huge = daemon.cli("disk", "add", "web1", "huge", "--size", "900T")
    assert huge.returncode == 1
    assert "disk over-commitment would be" in huge.stderr and "above the policy" in huge.stderr
    grow = daemon.cli("disk", "resize", "web1", "data", "900T")
    assert grow.returncode == 1 and "disk over-commitment would be" in grow.stderr
    with daemon.client() as c:
        disks = {d.name: d for d in c.list_disks("web1")}
        assert set(disks) == {"root", "data"} and disks["data"].size == 32 * MiB
        assert c.host_info().capacity["disk"]["allocated"] == before + 32 * MiB
    assert not (Path(disks["root"].path).parent / "huge.img").exists()
    daemon.cli("disk", "resize", "web1", "data", "48M", check=True)  # a small grow: fine
    daemon.cli("disk", "remove", "web1", "data", check=True)
    with daemon.client() as c:
        assert c.host_info().capacity["disk"]["allocated"] == before


def test_a_restart_removes_pool_images_and_snapshot_directories_no_row_owns(
    tmp_path: Path,
) -> None:
    """What a corrald killed mid `disk add` (an image and no row, a row and no image, a
    partial image) or mid snapshot (a directory, no row) left is removed at the next start;
    the disks and snapshots with rows and images stay."""
    from tests.integration.conftest import start_daemon, stop_daemon, write_fake_template

    write_fake_template(tmp_path / "templates")
    daemon = start_daemon(tmp_path)
    try:
        _create(daemon, "web1")
        daemon.cli("disk", "add", "web1", "data", "--size", "32M", check=True)
        daemon.cli("disk", "add", "web1", "never", "--size", "32M", check=True)
        daemon.cli("snapshot", "create", "web1", "s1", check=True)
        with daemon.client() as c:
            disks = {d.name: Path(d.path) for d in c.list_disks("web1")}
    finally:
        stop_daemon(daemon)
    volumes = disks["root"].parent
    disks["never"].unlink()  # a row whose mkfs never finished: its image is not there
    kept = sorted(volumes.rglob("*"))
    stray, half = volumes / "half.img", volumes / "snapshots" / "0123456789abcdef"
    partial = volumes / ".more.img.partial"  # a data disk's mkfs cut short
    partial.write_bytes(b"\0" * 4096)
    stray.write_bytes(b"\0" * 4096)
    half.mkdir(parents=True)
    (half / "root.img").write_bytes(b"\0" * 4096)
    daemon = start_daemon(tmp_path)
    try:
        assert not stray.exists() and not half.exists() and not partial.exists()
        assert sorted(volumes.rglob("*")) == kept
        with daemon.client() as c:
            assert sorted(d.name for d in c.list_disks("web1")) == ["data", "root"]
        assert "s1" in daemon.cli("snapshot", "list", "web1", check=True).stdout
    finally:
        stop_daemon(daemon)
