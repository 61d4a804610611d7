"""Templates as files, storage pools, clones and conversion through corrald (fake drivers)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from corral.client import ApiError
from corral.templates.artifact import export_template
from corral.wire.models import CreateRequest
from tests.integration.conftest import Daemon
from tests.unit.templates.test_artifact import make_template


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    dest = tmp_path / "mini.corral-template"
    export_template(make_template(tmp_path / "mini-src", "mini"), dest)
    return dest


def _templates_dir(daemon: Daemon) -> list[str]:
    return sorted(p.name for p in (daemon.state_dir / "templates").iterdir())


def test_template_import_export_delete_through_the_cli(
    daemon: Daemon, artifact: Path, tmp_path: Path
) -> None:
    daemon.cli("template", "import", str(artifact), check=True)
    listed = daemon.cli("template", "list", "-f", "json", check=True)
    assert "mini" in {t["name"] for t in json.loads(listed.stdout)}
    again = daemon.cli("template", "import", str(artifact))
    assert again.returncode == 1 and "already installed" in again.stderr
    out = tmp_path / "back.corral-template"
    daemon.cli("template", "export", "mini", str(out), check=True)
    with tarfile.open(out) as a, tarfile.open(artifact) as b:
        assert [m.name for m in a] == [m.name for m in b]
    daemon.cli("template", "delete", "mini", check=True)
    assert "mini" not in _templates_dir(daemon)
    daemon.cli("template", "import", str(out), check=True)  # the export is importable


def test_bad_template_files_are_refused_and_leave_nothing(
    daemon: Daemon, artifact: Path, tmp_path: Path
) -> None:
    before = _templates_dir(daemon)
    with tarfile.open(artifact) as tar:
        cut_at = tar.getmember("vmlinux.gz").offset_data + 100
    truncated = tmp_path / "truncated.corral-template"
    truncated.write_bytes(artifact.read_bytes()[:cut_at])
    garbage = tmp_path / "garbage.corral-template"
    garbage.write_bytes(b"this is not a tar file at all" * 100)
    for bad, words in ((truncated, "truncated"), (garbage, "not a valid Corral template")):
        proc = daemon.cli("template", "import", str(bad))
        assert proc.returncode == 1, proc.stdout
        assert words in proc.stderr
    assert _templates_dir(daemon) == before  # no staging directory, no upload, no template


def test_default_pool_holds_the_root_disk_and_delete_frees_it(daemon: Daemon) -> None:
    with daemon.client() as c:
        pools = c.list_pools()
        assert [(p.name, p.default) for p in pools] == [("default", True)]
        assert pools[0].driver == "dir"  # fake drivers: never a loop device
        c.wait(c.create_instance(CreateRequest(name="web1", type="ct", template="tiny")).id)
        disks = c.list_disks("web1")
        assert [(d.name, d.pool, d.root) for d in disks] == [("root", "default", True)]
        assert Path(disks[0].path).is_relative_to(Path(pools[0].path))
        assert Path(disks[0].path).stat().st_size == 64 * 1024**2
        assert c.get_pool("default").volumes == 1
        # The template's base image is built once and reused
        bases = list((Path(pools[0].path) / "bases").glob("tiny-*.img"))
        assert len(bases) == 1
        c.wait(c.create_instance(CreateRequest(name="web2", type="vm", template="tiny")).id)
        assert list((Path(pools[0].path) / "bases").glob("tiny-*.img")) == bases
        proc = daemon.cli("template", "delete", "tiny")
        assert proc.returncode == 1 and "web1" in proc.stderr and "web2" in proc.stderr
        for name in ("web1", "web2"):
            assert c.wait(c.delete_instance(name).id).status == "success"
        assert not Path(disks[0].path).exists()
        assert c.get_pool("default").volumes == 0


def test_clone_copies_every_disk_and_refuses_a_running_source(daemon: Daemon) -> None:
    with daemon.client() as c:
        c.wait(c.create_instance(CreateRequest(name="src", type="ct", template="tiny")).id)
        src_disk = Path(c.list_disks("src")[0].path)
        with src_disk.open("r+b") as f:  # something only the source has
            f.seek(60 * 1024**2)
            f.write(b"written-in-src")
        proc = daemon.cli("clone", "src", "copy1")
        assert proc.returncode == 0, proc.stderr
        copy = c.get_instance("copy1")
        assert copy.type == "ct" and copy.state == "stopped"
        copy_disk = Path(c.list_disks("copy1")[0].path)
        assert copy_disk != src_disk
        assert copy_disk.read_bytes() == src_disk.read_bytes()
        c.wait(c.action("src", "start").id)
        refused = daemon.cli("clone", "src", "copy2")
        assert refused.returncode == 1 and "stop it before cloning" in refused.stderr
        assert "copy2" not in {i.name for i in c.list_instances()}


def test_convert_keeps_identity_and_disk(daemon: Daemon) -> None:
    with daemon.client() as c:
        c.wait(c.create_instance(CreateRequest(name="box", type="ct", template="tiny",
                                               start=True)).id)
        before = c.get_instance("box")
        disk = Path(c.list_disks("box")[0].path)
        inode = disk.stat().st_ino
        used = c.get_pool("default").used
        refused = daemon.cli("convert", "box", "--to", "vm")
        assert refused.returncode == 1 and "has no kernel" in refused.stderr
        assert c.get_instance("box").type == "ct"
        (daemon.state_dir / "templates" / "tiny" / "vmlinux").write_bytes(b"\x7fELF")
        proc = daemon.cli("convert", "box", "--to", "vm", "--force")
        assert proc.returncode == 0, proc.stderr
        after = c.get_instance("box")
        assert (after.id, after.name, after.type, after.state) == (
            before.id, "box", "vm", "running")
        assert after.resources == before.resources
        assert Path(c.list_disks("box")[0].path) == disk and disk.stat().st_ino == inode
        assert abs(c.get_pool("default").used - used) < 8 * 1024**2  # nothing copied
        same = daemon.cli("convert", "box", "--to", "vm")
        assert same.returncode == 1 and "already a vm" in same.stderr
        daemon.cli("convert", "box", "--to", "ct", "--force", check=True)
        assert c.get_instance("box").type == "ct"
        with pytest.raises(ApiError, match="not one of"):
            c.convert_instance("box", "lxd")


def test_pools_create_and_delete(daemon: Daemon, tmp_path: Path) -> None:
    where = tmp_path / "second"
    daemon.cli("storage", "create", "second", "--driver", "dir", "--path", str(where),
               check=True)
    listed = json.loads(daemon.cli("storage", "list", "-f", "json", check=True).stdout)
    assert {p["name"] for p in listed} == {"default", "second"}
    dup = daemon.cli("storage", "create", "second", "--driver", "dir")
    assert dup.returncode == 1 and "already exists" in dup.stderr
    bad = daemon.cli("storage", "create", "third", "--driver", "zfs")
    assert bad.returncode == 1 and "not one of" in bad.stderr
    refuse = daemon.cli("storage", "delete", "default")
    assert refuse.returncode == 1 and "default pool" in refuse.stderr
    daemon.cli("storage", "delete", "second", check=True)
    assert not where.exists()


def test_concurrent_first_creates_share_one_base_image_build(daemon: Daemon) -> None:
    """The first creates of a template, submitted at once, wait for one base image build
    (they raced on its file: 'mkfs.ext4 … .partial: No such file or directory')."""
    with daemon.client() as c:
        pool = Path(c.get_pool("default").path)
        for base in (pool / "bases").glob("tiny-*.img"):
            base.unlink()  # as on a fresh host
        ops = [c.create_instance(CreateRequest(name=f"burst{i}", type="ct", template="tiny"))
               for i in range(4)]
        done = [c.wait(op.id) for op in ops]
        assert [d.status for d in done] == ["success"] * 4, [d.error for d in done]
        assert len(list((pool / "bases").glob("tiny-*.img"))) == 1
        for i in range(4):
            assert c.wait(c.delete_instance(f"burst{i}").id).status == "success"
