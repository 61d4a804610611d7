"""Rendering an LXC container configuration."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from corral.domain.errors import InvalidInput
from corral.domain.resources import Resources
from corral.drivers.lxc.config import (
    HOOK_SHELL,
    ContainerConfig,
    normalise_signal,
    render_config,
)
from corral.host.cgroups import CgroupLayout, CgroupVersion
from corral.host.idmap import IdMap, IdRange

HYBRID = CgroupLayout(
    version=CgroupVersion.HYBRID,
    v1={"memory": Path("/sys/fs/cgroup/memory"), "cpu": Path("/sys/fs/cgroup/cpu")},
    v2_mount=Path("/sys/fs/cgroup/unified"),
    v2_controllers=frozenset({"hugetlb"}),
)
V2 = CgroupLayout(
    version=CgroupVersion.V2,
    v2_mount=Path("/sys/fs/cgroup"),
    v2_controllers=frozenset({"cpu", "memory", "io", "pids"}),
)
SHIFT = IdMap(uid=IdRange(100000, 65536), gid=IdRange(100000, 65536))


def _config(idmap: IdMap | None, cgroups: CgroupLayout, **res: Any) -> ContainerConfig:
    return ContainerConfig(
        lxc_name="101",
        hostname="web1",
        disk_path=Path("/srv/corral/instances/101/root.img"),
        console_log=Path("/srv/corral/instances/101/console.log"),
        log_file=Path("/srv/corral/instances/101/lxc.log"),
        halt_signal="SIGUSR2",
        resources=replace(Resources(memory=128 * 1024**2), **res),
        idmap=idmap,
        cgroups=cgroups,
        rootfs_mount=Path("/srv/corral/instances/101/run/rootfs"),
    )


def _values(text: str, key: str) -> list[str]:
    found = []
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            found.append(value.strip())
    return found


def test_unprivileged_on_hybrid() -> None:
    text = render_config(_config(SHIFT, HYBRID))
    assert _values(text, "lxc.idmap") == ["u 0 100000 65536", "g 0 100000 65536"]
    assert _values(text, "lxc.include") == [
        "/usr/share/lxc/config/common.conf",
        "/usr/share/lxc/config/userns.conf",
    ]
    # Unshifted image, host loop mount, idmapped into the container's user namespace.
    assert _values(text, "lxc.rootfs.path") == ["dir:/srv/corral/instances/101/run/rootfs"]
    assert _values(text, "lxc.rootfs.options") == ["idmap=container"]
    assert _values(text, "lxc.uts.name") == ["web1"]
    assert _values(text, "lxc.net.0.type") == ["empty"]
    assert _values(text, "lxc.signal.halt") == ["SIGUSR2"]
    assert _values(text, "lxc.cgroup.relative") == ["0"]
    assert _values(text, "lxc.cgroup.dir.container") == ["corral/ct/101"]
    assert _values(text, "lxc.cgroup.dir.monitor") == ["corral/monitor/101"]
    assert _values(text, "lxc.console.logfile") == ["/srv/corral/instances/101/console.log"]
    assert _values(text, "lxc.console.size") == ["1MB"]
    assert _values(text, "lxc.tty.max") == ["1"]
    assert _values(text, "lxc.cgroup.memory.limit_in_bytes") == [str(128 * 1024**2)]
    assert _values(text, "lxc.cgroup2.memory.max") == []
    assert "lxc.cgroup.dir =" not in text  # mutually exclusive with dir.container/monitor


def test_privileged_has_no_user_namespace() -> None:
    text = render_config(_config(None, HYBRID))
    assert _values(text, "lxc.idmap") == []
    assert _values(text, "lxc.include") == ["/usr/share/lxc/config/common.conf"]
    # The image is mounted on the host by the driver (no loop devices inside the container).
    assert _values(text, "lxc.rootfs.path") == ["dir:/srv/corral/instances/101/run/rootfs"]
    assert _values(text, "lxc.rootfs.options") == []  # no idmap without a user namespace
    assert _values(text, "lxc.hook.post-stop") == [
        f"{HOOK_SHELL}i=0; while [ -e /srv/corral/instances/101/run/corral-quiescing ] && "
        "[ $i -lt 300 ]; do sleep 0.01; i=$((i+1)); done; "
        "umount /srv/corral/instances/101/run/rootfs'"
    ]


def test_unprivileged_unmounts_its_root_however_it_stops() -> None:
    text = render_config(_config(SHIFT, HYBRID))
    assert _values(text, "lxc.hook.post-stop") == [
        f"{HOOK_SHELL}i=0; while [ -e /srv/corral/instances/101/run/corral-quiescing ] && "
        "[ $i -lt 300 ]; do sleep 0.01; i=$((i+1)); done; "
        "umount /srv/corral/instances/101/run/rootfs'"
    ]


def test_memory_goes_to_cgroup2_keys_on_v2() -> None:
    text = render_config(_config(SHIFT, V2, memory_min=64 * 1024**2))
    assert _values(text, "lxc.cgroup2.memory.max") == [str(128 * 1024**2)]
    assert _values(text, "lxc.cgroup2.memory.low") == [str(64 * 1024**2)]
    assert _values(text, "lxc.cgroup.memory.limit_in_bytes") == []


def test_soft_limit_on_v1() -> None:
    text = render_config(_config(SHIFT, HYBRID, memory_min=32 * 1024**2))
    assert _values(text, "lxc.cgroup.memory.soft_limit_in_bytes") == [str(32 * 1024**2)]


def test_no_memory_controller_no_memory_lines() -> None:
    bare = CgroupLayout(version=CgroupVersion.NONE)
    assert "memory" not in render_config(_config(SHIFT, bare))


@pytest.mark.parametrize(
    ("given", "rendered"),
    [("SIGPWR", "SIGPWR"), ("usr2", "SIGUSR2"), ("12", "12"), ("SIGRTMIN+3", "SIGRTMIN+3")],
)
def test_halt_signal_forms(given: str, rendered: str) -> None:
    assert normalise_signal(given) == rendered


def test_halt_signal_rejects_nonsense() -> None:
    with pytest.raises(InvalidInput):
        normalise_signal("SIG PWR; lxc.init.cmd = /bin/evil")


def test_data_disks_are_bound_in_idmapped_and_unmounted_at_stop() -> None:
    from dataclasses import replace as dc_replace

    host = Path("/srv/corral/instances/101/run/disks/data")
    cfg = dc_replace(_config(SHIFT, HYBRID), data_mounts=((host, "/mnt/data"),))
    text = render_config(cfg)
    assert _values(text, "lxc.mount.entry") == [
        f"{host} mnt/data none bind,create=dir,idmap=container 0 0"]
    assert f"{HOOK_SHELL}umount {host} || true'" in _values(text, "lxc.hook.post-stop")
    privileged = render_config(dc_replace(_config(None, HYBRID), data_mounts=((host, "/srv"),)))
    assert _values(privileged, "lxc.mount.entry") == [f"{host} srv none bind,create=dir 0 0"]


def test_hooks_set_their_own_path() -> None:
    """lxc-start runs without the shadow tools' directories on PATH (startenv.py); the hooks
    it runs inherit that PATH, so each sets the full one before calling umount or sleep."""
    text = render_config(_config(SHIFT, HYBRID))
    for hook in _values(text, "lxc.hook.post-stop"):
        assert hook.startswith("/bin/sh -c 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                               "/usr/bin:/sbin:/bin; ")
