"""The configuration an LXC restore reads (pure): no console, no ttys; unprivileged, the
idmapped root Corral made in place of the loop mount and without ``idmap=container``."""

from __future__ import annotations

from pathlib import Path

from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.drivers.lxc.checkpoint import IDMAP_ROOT, _restore_config

MiB = 1024**2


def _spec(privileged: bool) -> InstanceSpec:
    return InstanceSpec(id=101, name="ct1", kind=Kind.CT, template="tiny",
                        resources=Resources(memory=64 * MiB, disk=64 * MiB),
                        directory=Path("/srv/i/101"), privileged=privileged)


def test_unprivileged_restore_config_points_at_the_idmapped_root() -> None:
    spec = _spec(False)
    text = (f"lxc.uts.name = ct1\nlxc.rootfs.path = dir:{spec.run_dir / 'rootfs'}\n"
            "lxc.rootfs.options = idmap=container\nlxc.tty.max = 1\n")
    root = spec.run_dir / IDMAP_ROOT
    lines = _restore_config(text, spec, root).splitlines()
    assert f"lxc.rootfs.path = dir:{root}" in lines
    assert not any("idmap=container" in line or "rootfs'}" in line for line in lines)
    assert lines[-2:] == ["lxc.console.path = none", "lxc.tty.max = 0"]


def test_unprivileged_restore_config_binds_the_idmapped_data_disks() -> None:
    spec = _spec(False)
    disk = spec.run_dir / "disks" / "data"
    idmapped = spec.run_dir / "disks-idmap" / "data"
    text = (f"lxc.mount.entry = {disk} srv/data none bind,create=dir,idmap=container 0 0\n"
            f"lxc.hook.post-stop = /bin/sh -c 'umount {disk} || true'\n")
    lines = _restore_config(text, spec, None, {disk: idmapped}).splitlines()
    assert lines[0] == f"lxc.mount.entry = {idmapped} srv/data none bind,create=dir 0 0"
    assert lines[1] == f"lxc.hook.post-stop = /bin/sh -c 'umount {disk} || true'"


def test_privileged_restore_config_keeps_the_loop_mount() -> None:
    spec = _spec(True)
    text = f"lxc.rootfs.path = dir:{spec.run_dir / 'rootfs'}\n"
    assert _restore_config(text, spec, None) == (
        text + "lxc.console.path = none\nlxc.tty.max = 0\n")


def test_tty_group_read_from_the_container(tmp_path: Path) -> None:
    from corral.drivers.lxc.checkpoint import TTY_GID, tty_gid

    (tmp_path / "etc").mkdir()
    group = tmp_path / "etc" / "group"
    group.write_text("root:x:0:\ntty:x:7:\nusers:x:100:\n")
    assert tty_gid(tmp_path, 65536) == 7
    assert tty_gid(tmp_path, 7) == TTY_GID  # outside the container's mapped range
    group.write_text("root:x:0:\n")
    assert tty_gid(tmp_path, 65536) == TTY_GID  # none named tty
    group.unlink()
    outside = tmp_path / "host-group"
    outside.write_text("tty:x:9:\n")
    group.symlink_to(outside)  # a link the guest made: not followed
    assert tty_gid(tmp_path, 65536) == TTY_GID
    group.unlink()
    (tmp_path / "etc").rmdir()
    (tmp_path / "group").write_text("tty:x:9:\n")
    (tmp_path / "etc").symlink_to(tmp_path)  # etc itself a link
    assert tty_gid(tmp_path, 65536) == TTY_GID
