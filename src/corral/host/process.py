"""Running a host command with a deadline that kills the whole process tree it started.

``run`` (corral.host.run) kills only the command itself on a timeout. Tools such as
``lxc-attach`` leave the process they started inside the container running when they die,
so for those the deadline has to reach every descendant. The command starts as every other
(``host.spawn``: stdin a memory file holding ``input``, output in memory files), so what it
wrote before its deadline is kept.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from corral.domain.errors import HostFailure
from corral.host.spawn import TimedOut, spawn

log = logging.getLogger("corral.host")

KILLED_EXIT = 128 + signal.SIGKILL
"""The exit code reported for a command killed at its deadline (like ``timeout -s KILL``)."""


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool


def children(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """Direct children of ``pid`` (from /proc/<pid>/task/*/children)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in (proc / str(pid) / "task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(word) for word in (task / "children").read_text().split()]
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, parents before their children."""
    order: list[int] = []
    pending = children(pid)
    while pending:
        current = pending.pop(0)
        if current in order:
            continue
        order.append(current)
        pending += children(current)
    return order


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid``'s descendants (repeatedly, in case they forked meanwhile), then it."""
    for _ in range(10):
        below = descendants(pid)
        if not below:
            break
        for child in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def run_with_deadline(
    argv: Sequence[str], *, input: bytes = b"", timeout: float | None
) -> Finished:
    """Run ``argv`` with ``input`` on stdin; at ``timeout`` kill it and all it started."""
    log.debug("run (deadline %s s) %s", timeout, " ".join(argv))
    try:
        process = spawn(argv, input=input)
    except FileNotFoundError as exc:
        raise HostFailure(f"'{argv[0]}' is not installed on this host") from exc
    try:
        timed_out = False
        try:
            process.wait(timeout)
        except TimedOut:
            kill_tree(process.pid)
            process.wait()
            timed_out = True
        stdout, stderr = process.output()
    except BaseException:
        if process.returncode is None:  # never a reaped pid: it may be another's by now
            kill_tree(process.pid)
            process.wait()
        raise
    finally:
        process.close()
    returncode = KILLED_EXIT if timed_out else process.wait()
    return Finished(returncode, stdout, stderr, timed_out=timed_out)
