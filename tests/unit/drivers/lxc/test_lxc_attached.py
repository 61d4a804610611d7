"""The tree check of ``drivers.lxc.attached`` on a real process tree this test forks: a
stand-in init with a child and a grandchild, and a process beside it (as ``lxc-attach``'s
child is beside a container's init)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.drivers.lxc.attached import command, inner_pid, outside_tree


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(word) for word in text.split()]


def _wait_children(pid: int, count: int) -> list[int]:
    deadline = time.monotonic() + 30  # a bound, not a timing assertion
    while len(found := _children(pid)) < count:
        assert time.monotonic() < deadline, f"{pid} never started {count} children"
        time.sleep(0.01)
    return found


@pytest.fixture
def tree() -> Iterator[tuple[int, list[int], int]]:
    """(init, its descendants, a process outside its tree)."""
    init = subprocess.Popen(["sh", "-c", "sleep 600 & sh -c 'sleep 601 & wait' & wait"],
                            start_new_session=True)
    beside = subprocess.Popen(["sleep", "602"])
    try:
        deadline = time.monotonic() + 30  # a bound, not a timing assertion
        while not (grandchildren := [g for c in _wait_children(init.pid, 2)
                                     for g in _children(c)]):
            assert time.monotonic() < deadline, "the inner sh never started its sleep"
            time.sleep(0.01)
        yield init.pid, [*_children(init.pid), *grandchildren], beside.pid
    finally:
        os.killpg(init.pid, signal.SIGKILL)  # the whole tree: its own session
        init.wait()
        beside.kill()
        beside.wait()


def test_processes_below_init_are_inside_one_beside_it_is_not(
        tree: tuple[int, list[int], int]) -> None:
    init, below, beside = tree
    assert outside_tree([init, *below, beside], init) == [beside]
    assert outside_tree([init, *below], init) == []


def test_a_member_whose_parent_left_the_container_is_outside(
        tree: tuple[int, list[int], int]) -> None:
    init, below, beside = tree
    # the grandchild's parent (the middle sh) not a member: its chain leaves the container
    grandchild = below[2]
    assert outside_tree([init, grandchild, beside], init) == sorted([grandchild, beside])


def test_a_process_that_ended_is_left_out(tree: tuple[int, list[int], int]) -> None:
    init, below, beside = tree
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert outside_tree([init, *below, beside, gone.pid], init) == [beside]


def test_command_and_pid_inside() -> None:
    proc = subprocess.Popen(["sleep", "603"])
    try:
        deadline = time.monotonic() + 30  # the child may not have exec'd yet: a bound
        while (said := command(proc.pid)) != "sleep 603" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert said == "sleep 603"
        assert inner_pid(proc.pid) == proc.pid  # the test's own pid namespace
    finally:
        proc.kill()
        proc.wait()
    assert command(proc.pid) == "?"
