"""Cgroup layout detection from /proc/mounts text."""

from __future__ import annotations

from pathlib import Path

from corral.host.cgroups import CgroupVersion, host_layout, parse_layout, read_layout

HYBRID = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/cpuset cgroup rw,relatime,cpuset 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/freezer cgroup rw,relatime,freezer 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""

V1_DEBIAN10 = """\
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,nosuid,nodev,noexec,relatime,xattr,name=systemd 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0
"""

PURE_V1 = """\
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,release_agent=/x,pids 0 0
"""

V2 = """\
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0
"""

V2_CONTROLLERS = "cpuset cpu io memory hugetlb pids rdma misc\n"


def test_hybrid_host_as_measured_here() -> None:
    layout = parse_layout(HYBRID, {Path("/sys/fs/cgroup/unified"): "hugetlb\n"})
    assert layout.version == CgroupVersion.HYBRID
    assert layout.v1["memory"] == Path("/sys/fs/cgroup/memory")
    assert layout.v1["name=systemd"] == Path("/sys/fs/cgroup/systemd")
    assert layout.v2_mount == Path("/sys/fs/cgroup/unified")
    assert layout.controller_version("memory") == CgroupVersion.V1
    assert layout.controller_version("hugetlb") == CgroupVersion.V2
    assert layout.controller_version("io") is None
    assert layout.controllers()["hugetlb"] == "v2"
    assert "name=systemd" not in layout.controllers()


def test_v1_controllers_sharing_a_mount_and_options_that_are_not_controllers() -> None:
    layout = parse_layout(V1_DEBIAN10, {Path("/sys/fs/cgroup/unified"): ""})
    assert layout.version == CgroupVersion.HYBRID
    assert layout.v1["cpu"] == layout.v1["cpuacct"] == Path("/sys/fs/cgroup/cpu,cpuacct")
    for option in ("rw", "nosuid", "xattr", "relatime"):
        assert option not in layout.v1


def test_pure_v1_without_cgroup2() -> None:
    layout = parse_layout(PURE_V1, {})
    assert layout.version == CgroupVersion.V1
    assert layout.v2_mount is None
    assert set(layout.v1) == {"cpu", "cpuacct", "memory", "pids"}


def test_pure_v2_reads_controllers_at_its_mount() -> None:
    seen: list[Path] = []

    def reader(mount: Path) -> str:
        seen.append(mount)
        return V2_CONTROLLERS

    layout = parse_layout(V2, reader)
    assert seen == [Path("/sys/fs/cgroup")]
    assert layout.version == CgroupVersion.V2
    assert layout.v1 == {}
    assert layout.controller_version("memory") == CgroupVersion.V2
    assert layout.controller_version("io") == CgroupVersion.V2


def test_only_named_v1_hierarchy_is_still_v2() -> None:
    text = V2 + "cgroup /sys/fs/cgroup/systemd cgroup rw,name=systemd 0 0\n"
    layout = parse_layout(text, {Path("/sys/fs/cgroup"): V2_CONTROLLERS})
    assert layout.version == CgroupVersion.V2


def test_no_cgroups_at_all() -> None:
    assert parse_layout("proc /proc proc rw 0 0\n", {}).version == CgroupVersion.NONE


def test_controller_bound_to_v1_is_not_reported_on_v2() -> None:
    layout = parse_layout(HYBRID, {Path("/sys/fs/cgroup/unified"): "memory hugetlb"})
    assert layout.v2_controllers == frozenset({"hugetlb"})


def test_escaped_mount_point() -> None:
    text = "cgroup2 /mnt/my\\040cgroups cgroup2 rw 0 0\n"
    layout = parse_layout(text, {Path("/mnt/my cgroups"): "memory"})
    assert layout.v2_mount == Path("/mnt/my cgroups")
    assert layout.controller_version("memory") == CgroupVersion.V2


def test_host_layout_is_read_once_and_is_the_hosts() -> None:
    assert host_layout() is host_layout()
    assert host_layout() == read_layout()
