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


def test_privileged_restore_config_keeps_the_loop_mount() -> None:
    spec = _spec(True)
    text = f"lxc.rootfs.path = dir:{spec.run_dir / 'rootfs'}\n"
    assert _restore_config(text, spec, None) == (
        text + "lxc.console.path = none\nlxc.tty.max = 0\n")
