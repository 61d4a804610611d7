"""A container's state from its cgroup files (a cgroup tree laid out in a directory)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from corral.drivers.base import RuntimeState
from corral.drivers.lxc.config import INNER, cgroup_dirs
from corral.drivers.lxc.state import StateReader, init_pid
from corral.host.cgroups import CgroupLayout, CgroupVersion


def _tree(tmp_path: Path) -> tuple[StateReader, Path, Path]:
    pids, freezer = tmp_path / "pids", tmp_path / "freezer"
    layout = CgroupLayout(CgroupVersion.V1, v1={"pids": pids, "freezer": freezer})
    return StateReader(layout), pids, freezer


def _container(tmp_path: Path) -> Path:
    config = tmp_path / "lxc" / "101"
    config.mkdir(parents=True)
    (config / "config").write_text("lxc.uts.name = web\n")
    return config


def test_no_config_is_missing_and_no_group_is_stopped(tmp_path: Path) -> None:
    reader, _pids, _freezer = _tree(tmp_path)
    assert reader.status(tmp_path / "lxc" / "101", "101", tmp_path).state is \
        RuntimeState.MISSING
    assert reader.status(_container(tmp_path), "101", tmp_path).state is RuntimeState.STOPPED


def test_processes_in_the_inner_group_are_running_and_a_frozen_group_suspended(
    tmp_path: Path,
) -> None:
    reader, pids, freezer = _tree(tmp_path)
    config = _container(tmp_path)
    rel = cgroup_dirs("101")["container"]
    (pids / rel / INNER).mkdir(parents=True)
    (pids / rel / "cgroup.procs").write_text("")
    (pids / rel / INNER / "cgroup.procs").write_text(f"{os.getpid()}\n")
    (freezer / rel).mkdir(parents=True)
    (freezer / rel / "freezer.state").write_text("THAWED\n")
    running = reader.status(config, "101", tmp_path)
    assert (running.state, running.pid) == (RuntimeState.RUNNING, os.getpid())
    (freezer / rel / "freezer.state").write_text("FROZEN\n")
    assert reader.status(config, "101", tmp_path).state is RuntimeState.SUSPENDED
    (pids / rel / INNER / "cgroup.procs").write_text("")  # init gone, group not yet removed
    assert reader.status(config, "101", tmp_path).state is RuntimeState.STOPPED


def test_a_guest_that_moved_its_processes_into_its_own_groups_is_running(
    tmp_path: Path,
) -> None:
    reader, pids, _freezer = _tree(tmp_path)
    rel = cgroup_dirs("101")["container"]
    (pids / rel / INNER / "init.scope").mkdir(parents=True)
    for group in (pids / rel, pids / rel / INNER):
        (group / "cgroup.procs").write_text("")
    (pids / rel / INNER / "init.scope" / "cgroup.procs").write_text(f"{os.getpid()}\n")
    assert reader.members(rel) == [os.getpid()]


def test_init_is_the_member_whose_parent_is_outside() -> None:
    # this process's parent is outside the set; its pid is the only one that exists here
    assert init_pid([os.getpid()]) == os.getpid()
    assert init_pid([os.getpid(), 2**22 + 1]) == os.getpid()


def _stat(proc: Path, pid: int, parent: int, started: int) -> None:
    (proc / str(pid)).mkdir()
    rest = " ".join(["0"] * 15)  # fields 5-19, then num_threads, itrealvalue, starttime
    (proc / str(pid) / "stat").write_text(
        f"{pid} (a (b) c) S {parent} {rest} 1 0 {started} 0 0\n")


def test_init_is_the_oldest_by_start_time_when_pids_wrapped(tmp_path: Path) -> None:
    """An ``lxc-attach``ed process (parent outside too) started after init but, the host's
    pids having wrapped, with a lower pid: init is still the one that started first."""
    _stat(tmp_path, 7157, 7152, started=1000)  # init (a restored one: a late pid)
    _stat(tmp_path, 7160, 7157, started=1001)  # init's child
    _stat(tmp_path, 1033, 1029, started=9000)  # attached: lxc-attach (1029) is outside
    assert init_pid([1033, 7157, 7160], tmp_path) == 7157
    assert init_pid([7157, 7160], tmp_path) == 7157
    assert init_pid([1033, 4242], tmp_path) == 1033  # 4242 gone: not init



def test_an_empty_group_with_no_monitor_left_says_the_monitor_died(tmp_path: Path) -> None:
    """LXC's monitor removes the group after a stop; a group left empty with no monitor
    process is a killed monitor (the crash reason); while the monitor lives, a plain stop."""
    reader, pids, _freezer = _tree(tmp_path)
    config = _container(tmp_path)
    dirs = cgroup_dirs("101")
    (pids / dirs["container"]).mkdir(parents=True)
    (pids / dirs["container"] / "cgroup.procs").write_text("")
    (pids / dirs["monitor"]).mkdir(parents=True)
    (pids / dirs["monitor"] / "cgroup.procs").write_text(f"{os.getpid()}\n")
    cleaning = reader.status(config, "101", tmp_path)
    assert cleaning.state is RuntimeState.STOPPED and "ended" not in cleaning.details
    (pids / dirs["monitor"] / "cgroup.procs").write_text("")
    killed = reader.status(config, "101", tmp_path)
    assert killed.state is RuntimeState.STOPPED
    assert "LXC monitor ended without stopping it" in killed.details["ended"]
    (pids / dirs["container"] / "cgroup.procs").unlink()
    (pids / dirs["container"]).rmdir()  # cleaned up as after any stop: nothing to say
    assert "ended" not in reader.status(config, "101", tmp_path).details


def test_a_restored_container_runs_in_its_group_and_an_exec_in_inner(tmp_path: Path) -> None:
    """CRIU's restore puts the container's processes in its group itself; ``lxc-attach``
    still starts an exec in ``INNER``: the members are both, and init the oldest of them."""
    reader, pids, _freezer = _tree(tmp_path)
    config = _container(tmp_path)
    rel = cgroup_dirs("101")["container"]
    (pids / rel / INNER).mkdir(parents=True)
    exec_pid = os.fork()
    if exec_pid == 0:  # "the exec": started after this process (the container's init here)
        time.sleep(60)  # killed below
        os._exit(0)
    try:
        (pids / rel / "cgroup.procs").write_text(f"{os.getpid()}\n")
        (pids / rel / INNER / "cgroup.procs").write_text(f"{exec_pid}\n")
        assert sorted(reader.members(rel) or []) == sorted([os.getpid(), exec_pid])
        running = reader.status(config, "101", tmp_path)
        assert (running.state, running.pid) == (RuntimeState.RUNNING, os.getpid())
    finally:
        os.kill(exec_pid, 9)
        os.waitpid(exec_pid, 0)
