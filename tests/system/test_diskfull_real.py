"""Disk full: in a storage pool (a create into it, a data disk added into it, a snapshot
copied into it) and in a backup target (a first backup, an incremental one while its chunks
are stored, one whose chunks are all there already while its manifest is written), each on a
small loop-backed ext4 the test makes: a clear error, nothing half-made (no row, no image, no
snapshot, no manifest, no temporary file), the previous backup chain intact and verifiable,
and the same action succeeding once there is space again. (A migration's receive into a full
target: tests/integration/test_migration.py.)"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.templates.image import TemplateImage
from tests.integration.conftest import Daemon, real_daemon_in
from tests.system.fixtures_template import tiny_template
from tests.system.orphans import Baseline, orphans

__all__ = ["tiny_template"]


@pytest.fixture
def state(tiny_template: TemplateImage) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for tool in ("lxc-start", "mkfs.ext4"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed on this host")
    state = Path(tempfile.mkdtemp(prefix="corral-diskfull-"))
    state.chmod(0o711)
    shutil.copytree(tiny_template.directory, state / "templates" / "tiny")
    yield state


@contextlib.contextmanager
def small_fs(name: str, mib: int) -> Iterator[Path]:
    """An ext4 of ``mib`` MiB on a loop device, mounted in a new directory (outside the
    daemon's state: the orphan checker would count it)."""
    top = Path(tempfile.mkdtemp(prefix=f"corral-diskfull-{name}-"))
    top.chmod(0o711)  # unprivileged containers walk to their disks
    where, image = top / name, top / f"{name}.img"
    where.mkdir()
    subprocess.run(["truncate", "-s", f"{mib}M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        shutil.rmtree(top, ignore_errors=True)


def fill(where: Path, leave_kib: int) -> Path:
    """A filler file taking all but ``leave_kib`` KiB of ``where``'s file system."""
    free = shutil.disk_usage(where).free // 1024
    filler = where / "filler"
    subprocess.run(["fallocate", "-l", f"{max(0, free - leave_kib)}K", str(filler)], check=True)
    return filler


def fill_up(where: Path) -> list[Path]:
    """Fillers taking every last block of ``where``'s file system."""
    big = fill(where, 64)
    rest = [where / "filler-rest", where / "filler-last"]
    for path, size in zip(rest, ("64k", "1k"), strict=True):  # down to the last 1 KiB block
        subprocess.run(["dd", "if=/dev/zero", f"of={path}", f"bs={size}"], capture_output=True,
                       check=False)
    assert shutil.disk_usage(where).free < 1024, shutil.disk_usage(where)
    return [big, *rest]


def no_space(answer: subprocess.CompletedProcess[str]) -> None:
    assert answer.returncode != 0, answer.stdout
    said = answer.stderr.lower()
    assert "space" in said or "full" in said, answer.stderr


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(".tmp-*")]


def names(daemon: Daemon) -> set[str]:
    return {i["name"] for i in json.loads(daemon.cli("list", "--format", "json").stdout)}


def test_a_full_pool_refuses_a_create_and_keeps_nothing(state: Path) -> None:
    baseline = Baseline()
    with real_daemon_in(state) as daemon, small_fs("small", 64) as mount:
        pool = mount / "pool"
        daemon.cli("storage", "create", "small", "--driver", "dir", "--path", str(pool),
                   check=True)
        before = sorted(p.relative_to(pool) for p in pool.rglob("*"))
        filler = fill(mount, 256)
        made = daemon.cli("create", "f1", "--type", "ct", "--template", "tiny", "--disk",
                          "256M", "--pool", "small")
        assert made.returncode != 0
        said = made.stderr.lower()
        assert "space" in said or "full" in said, made.stderr
        assert "f1" not in names(daemon)
        assert sorted(p.relative_to(pool) for p in pool.rglob("*")) == before
        assert orphans(state, baseline) == []
        filler.unlink()
        daemon.cli("create", "f1", "--type", "ct", "--template", "tiny", "--disk", "256M",
                   "--pool", "small", check=True)
        # a data disk into the full pool: refused, no image, no row
        images = sorted(p.relative_to(pool) for p in pool.rglob("*"))
        fillers = fill_up(mount)
        no_space(daemon.cli("disk", "add", "f1", "d1", "--size", "32M"))
        assert sorted(p.relative_to(pool) for p in pool.rglob("*")) == images
        listed = json.loads(daemon.cli("disk", "list", "f1", "--format", "json",
                                       check=True).stdout)
        assert [d["name"] for d in listed] == ["root"], listed
        assert orphans(state, baseline) == []
        for filler in fillers:
            filler.unlink()
        daemon.cli("disk", "add", "f1", "d1", "--size", "32M", check=True)
        # a snapshot (a copy: ext4 has no reflink) into the full pool: refused, no row, no
        # snapshot directory or image left
        images = sorted(p.relative_to(pool) for p in pool.rglob("*"))
        fillers = fill_up(mount)
        refused = daemon.cli("snapshot", "create", "f1", "s1")
        no_space(refused)
        assert "the pool is full; nothing of it was kept" in " ".join(refused.stderr.split())
        assert sorted(p.relative_to(pool) for p in pool.rglob("*")) == images
        listed = json.loads(daemon.cli("snapshot", "list", "f1", "--format", "json",
                                       check=True).stdout)
        assert listed["snapshots"] == [], listed
        assert orphans(state, baseline) == []
        for filler in fillers:
            filler.unlink()
        daemon.cli("snapshot", "create", "f1", "s1", check=True)
        daemon.cli("delete", "f1", check=True)
        daemon.cli("storage", "delete", "small", check=True)


def test_a_full_backup_target_keeps_the_previous_chain(state: Path) -> None:
    with real_daemon_in(state) as daemon, small_fs("target", 64) as mount:
        daemon.cli("create", "f1", "--type", "ct", "--template", "tiny", "--disk", "256M",
                   check=True)
        daemon.cli("start", "f1", check=True)
        daemon.cli("backup", "target", "add", "t", str(mount / "b"), check=True)
        daemon.cli("backup", "create", "f1", "--to", "t", check=True)
        assert daemon.cli("exec", "f1", "--", "dd", "if=/dev/urandom", "of=/new", "bs=1M",
                          "count=8").returncode == 0
        daemon.cli("exec", "f1", "--", "sync")
        filler = fill(mount, 1024)
        full = daemon.cli("backup", "create", "f1", "--to", "t")
        assert full.returncode != 0
        said = full.stderr.lower()
        assert "space" in said or "full" in said, full.stderr
        listed = json.loads(daemon.cli("backup", "list", "--to", "t", "--format", "json",
                                       check=True).stdout)
        assert len(listed) == 1, listed
        daemon.cli("backup", "verify", "--to", "t", check=True)
        filler.unlink()
        daemon.cli("backup", "create", "f1", "--to", "t", check=True)
        daemon.cli("backup", "verify", "--to", "t", check=True)
        daemon.cli("delete", "--force", "f1", check=True)
        daemon.cli("backup", "target", "remove", "t", check=True)


def test_a_full_target_refuses_a_first_backup_and_a_manifest(state: Path) -> None:
    """Full before the first chunk (no chain yet: nothing listed) and full when only the
    manifest is left to write (every chunk already stored: an unchanged instance)."""
    with real_daemon_in(state) as daemon, small_fs("target", 64) as mount:
        daemon.cli("create", "f1", "--type", "ct", "--template", "tiny", "--disk", "256M",
                   check=True)
        target = mount / "b"
        daemon.cli("backup", "target", "add", "t", str(target), check=True)
        fillers = fill_up(mount)
        no_space(daemon.cli("backup", "create", "f1", "--to", "t"))
        assert json.loads(daemon.cli("backup", "list", "--to", "t", "--format", "json",
                                     check=True).stdout) == []
        assert temporaries(mount) == []
        for filler in fillers:
            filler.unlink()
        daemon.cli("backup", "create", "f1", "--to", "t", check=True)
        fillers = fill_up(mount)  # the same disk again: no new chunk, only a manifest
        no_space(daemon.cli("backup", "create", "f1", "--to", "t"))
        listed = json.loads(daemon.cli("backup", "list", "--to", "t", "--format", "json",
                                       check=True).stdout)
        assert len(listed) == 1, listed
        assert temporaries(mount) == []
        daemon.cli("backup", "verify", "--to", "t", check=True)
        for filler in fillers:
            filler.unlink()
        daemon.cli("backup", "create", "f1", "--to", "t", check=True)
        daemon.cli("backup", "verify", "--to", "t", check=True)
        daemon.cli("delete", "--force", "f1", check=True)
        daemon.cli("backup", "target", "remove", "t", check=True)
