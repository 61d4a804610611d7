"""host.process.run_with_deadline: the posix_spawn start of host.run, with a deadline that
reaches every process the command started."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from corral.domain.errors import HostFailure
from corral.host.process import KILLED_EXIT, run_with_deadline


def _gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (gone, or a zombie waiting for its reaper)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return True
        if fields[0] in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def test_exit_code_output_and_input_come_back() -> None:
    done = run_with_deadline(["sh", "-c", "cat; echo oops >&2; exit 3"], input=b"fed",
                             timeout=30)
    assert (done.returncode, done.stdout, done.stderr, done.timed_out) == (3, b"fed", b"oops\n",
                                                                           False)


def test_the_deadline_kills_the_command_and_what_it_started() -> None:
    done = run_with_deadline(["sh", "-c", "sleep 300 & echo $!; echo started >&2; wait"],
                             timeout=0.5)
    assert done.timed_out and done.returncode == KILLED_EXIT
    assert done.stderr == b"started\n"  # what it wrote before the deadline is kept
    assert _gone(int(done.stdout))


def test_a_missing_command_is_a_host_failure() -> None:
    with pytest.raises(HostFailure, match="not installed"):
        run_with_deadline(["corral-no-such-tool"], timeout=5)


def test_no_descriptor_of_ours_is_left_open() -> None:
    before = set(os.listdir("/proc/self/fd"))
    run_with_deadline(["true"], timeout=5)
    run_with_deadline(["sleep", "10"], timeout=0.1)
    assert set(os.listdir("/proc/self/fd")) == before
