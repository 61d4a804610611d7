"""cgroupfs: where a process is (/proc/<pid>/cgroup) and moves that skip what is in place.

The move tests use a layout whose hierarchy is a plain directory: a write that happens
lands in a regular ``cgroup.procs`` file there, one that is skipped leaves nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.domain.errors import HostFailure
from corral.host import cgroupfs
from corral.host.cgroups import CgroupLayout, CgroupVersion


def test_parse_proc_cgroup_maps_each_controller_and_the_v2_line() -> None:
    text = ("9:name=systemd:/\n4:cpu,cpuacct:/corral/vm/101\n3:memory:/a b\n"
            "0::/user.slice\n")
    assert cgroupfs.parse_proc_cgroup(text) == {
        "name=systemd": "/", "cpu": "/corral/vm/101", "cpuacct": "/corral/vm/101",
        "memory": "/a b", "": "/user.slice"}


def test_groups_of_a_gone_process_is_empty() -> None:
    assert cgroupfs.groups_of(2**22 + 1) == {}  # above pid_max's ceiling: never a process


def _v1(tmp_path: Path) -> CgroupLayout:
    return CgroupLayout(version=CgroupVersion.V1, v1={"cpu": tmp_path / "cpu"})


def test_move_skips_a_hierarchy_that_already_holds_the_process(tmp_path: Path) -> None:
    where = cgroupfs.groups_of(os.getpid())
    if "cpu" not in where:
        pytest.skip("this host has no v1 cpu hierarchy in /proc/self/cgroup")
    rel = where["cpu"].strip("/")
    # no such directory under tmp_path: a write would fail
    cgroupfs.move_process(_v1(tmp_path), ["cpu"], rel, os.getpid())
    assert not (tmp_path / "cpu").exists()


def test_move_writes_where_the_process_is_not(tmp_path: Path) -> None:
    if "cpu" not in cgroupfs.groups_of(os.getpid()):
        pytest.skip("this host has no v1 cpu hierarchy in /proc/self/cgroup")
    (tmp_path / "cpu" / "elsewhere").mkdir(parents=True)
    cgroupfs.move_process(_v1(tmp_path), ["cpu"], "elsewhere", os.getpid())
    assert (tmp_path / "cpu" / "elsewhere" / "cgroup.procs").read_text() == str(os.getpid())
    with pytest.raises(HostFailure, match="cannot write"):
        cgroupfs.move_process(_v1(tmp_path), ["cpu"], "missing", os.getpid())


def test_memory_limit_reads_the_limit_in_force(tmp_path: Path) -> None:
    v1 = CgroupLayout(version=CgroupVersion.V1, v1={"memory": tmp_path / "v1"})
    (tmp_path / "v1" / "ct").mkdir(parents=True)
    limit = tmp_path / "v1" / "ct" / "memory.limit_in_bytes"
    limit.write_text("100663296\n")
    assert cgroupfs.memory_limit(v1, "ct") == 96 * 1024**2
    limit.write_text("9223372036854771712\n")  # v1's "no limit"
    assert cgroupfs.memory_limit(v1, "ct") is None
    assert cgroupfs.memory_limit(v1, "gone") is None
    v2 = CgroupLayout(version=CgroupVersion.V2, v2_mount=tmp_path / "v2",
                      v2_controllers=frozenset({"memory"}))
    (tmp_path / "v2" / "ct").mkdir(parents=True)
    (tmp_path / "v2" / "ct" / "memory.max").write_text("max\n")
    assert cgroupfs.memory_limit(v2, "ct") is None
    (tmp_path / "v2" / "ct" / "memory.max").write_text("134217728\n")
    assert cgroupfs.memory_limit(v2, "ct") == 128 * 1024**2


def test_the_usage_reader_reads_the_same_limit_and_cpus(tmp_path: Path) -> None:
    layout = CgroupLayout(version=CgroupVersion.V1,
                          v1={"memory": tmp_path / "mem", "cpuset": tmp_path / "cpuset"})
    for root, name, value in (("mem", "memory.limit_in_bytes", "100663296\n"),
                              ("cpuset", "cpuset.cpus", "0-1\n")):
        (tmp_path / root / "ct").mkdir(parents=True)
        (tmp_path / root / "ct" / name).write_text(value)
    reader = cgroupfs.UsageReader(layout)
    assert reader.memory_limit("ct") == cgroupfs.memory_limit(layout, "ct") == 96 * 1024**2
    assert reader.cpus("ct") == "0-1" and reader.cpus("gone") == ""
    (tmp_path / "mem" / "ct" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert reader.memory_limit("ct") is None and reader.memory_limit("gone") is None


def test_oom_kills_of_v1_are_summed_over_the_whole_subtree(tmp_path: Path) -> None:
    """LXC's ct/inner (one child: no listing), and a container's own groups below it."""
    layout = CgroupLayout(version=CgroupVersion.V1, v1={"memory": tmp_path})
    kills = {"ct": 1, "ct/inner": 2, "ct/inner/a": 4, "ct/inner/b": 8, "ct/inner/b/c": 16}
    for rel, count in kills.items():
        (tmp_path / rel).mkdir(parents=True)
        (tmp_path / rel / "memory.oom_control").write_text(
            f"oom_kill_disable 0\nunder_oom 0\noom_kill {count}\n")
    reader = cgroupfs.UsageReader(layout)
    assert reader.usage("ct").oom_kills == 31
    (tmp_path / "ct" / "other").mkdir()  # a second child of ct: listed, not assumed
    (tmp_path / "ct" / "other" / "memory.oom_control").write_text("oom_kill 32\n")
    assert reader.usage("ct").oom_kills == 63


def test_a_cgroup_directory_counts_its_subdirectories_in_its_links() -> None:
    """What ``_subgroups`` relies on, on this host's cgroupfs (kernfs)."""
    root = Path("/sys/fs/cgroup/memory")
    if not root.is_dir():
        root = Path("/sys/fs/cgroup")
    for _ in range(10):  # other daemons on this host add and remove groups at the root
        before = os.stat(root).st_nlink
        subdirs = [e for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
        if os.stat(root).st_nlink == before:
            break
    assert before == 2 + len(subdirs)
