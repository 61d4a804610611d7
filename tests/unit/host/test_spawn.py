"""host.spawn: posix_spawn with output in memory files and the end awaited on a pidfd --
what subprocess gave the callers of host.run (separate stdout/stderr, input, timeouts,
default SIGPIPE, no inherited descriptors) and what it could not (a daemonizing command
does not hold the caller)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from corral.host import libcspawn
from corral.host import spawn as spawn_module
from corral.host.spawn import TimedOut, spawn


@pytest.fixture(autouse=True, params=["libc", "os"])
def how(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with ``posix_spawnp`` through ctypes (the GIL released) and through
    ``os.posix_spawnp``: the command must get the same either way."""
    if request.param == "libc" and not libcspawn.available():
        pytest.skip("this libc has no posix_spawnp reachable through ctypes")
    monkeypatch.setattr(spawn_module, "USE_LIBC", request.param == "libc")
    return str(request.param)


def _run(argv: list[str], **kwargs: object) -> tuple[int, bytes, bytes]:
    process = spawn(argv, **kwargs)  # type: ignore[arg-type]
    try:
        code = process.wait(30)
        out, err = process.output()
    finally:
        process.close()
    return code, out, err


def test_stdout_and_stderr_are_kept_apart() -> None:
    assert _run(["sh", "-c", "echo out; echo err >&2; exit 3"]) == (3, b"out\n", b"err\n")


def test_output_larger_than_a_pipe_is_kept_whole() -> None:
    code, out, _ = _run(["head", "-c", "3000000", "/dev/zero"])
    assert code == 0 and out == b"\0" * 3_000_000


def test_input_is_the_commands_stdin_and_without_it_stdin_is_empty() -> None:
    assert _run(["cat"], input=b"x" * 200_000)[1] == b"x" * 200_000
    assert _run(["cat"]) == (0, b"", b"")


def test_env_replaces_the_environment() -> None:
    assert _run(["sh", "-c", 'echo "$ONLY-$HOME"'], env={"ONLY": "1", "PATH": os.defpath})[1] \
        == b"1-\n"


def _settled_fds(pid: int) -> list[int]:
    """The fds ``pid`` keeps: the kernel lets the spawning parent go before the exec has
    closed the close-on-exec ones, so a listing may hold some that are going away."""
    deadline = time.monotonic() + 10
    while True:
        fds = sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))
        if all(os.path.exists(f"/proc/{pid}/fd/{fd}") for fd in fds) or \
                time.monotonic() > deadline:
            return fds
        time.sleep(0.01)


def test_the_command_gets_default_sigpipe_an_empty_mask_and_only_fds_0_to_2() -> None:
    keep = os.open("/dev/null", os.O_RDONLY)  # close-on-exec, like every fd Python opens
    passed = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(passed, True)  # like one the daemon inherited from its parent
    blocked_here = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        process = spawn(["sleep", "30"])  # posix_spawn returns once it has exec'd
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked_here)
        os.close(keep)
        os.close(passed)
    try:
        status = dict(line.split(":\t", 1) for line in
                      Path(f"/proc/{process.pid}/status").read_text().splitlines())
        fds = _settled_fds(process.pid)
    finally:
        process.kill()
        process.wait()
        process.close()
    assert int(status["SigBlk"], 16) == 0
    assert not int(status["SigIgn"], 16) & (1 << (signal.SIGPIPE - 1))
    assert fds == [0, 1, 2]


def test_a_background_grandchild_holding_the_output_does_not_hold_the_caller(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "bg.pid"
    code, out, _ = _run(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; echo started"])
    grandchild = int(pidfile.read_text())
    try:
        os.kill(grandchild, 0)  # still running: the caller did not wait for it (a pipe would)
    finally:
        os.kill(grandchild, signal.SIGKILL)
    assert (code, out) == (0, b"started\n")


def test_wait_times_out_then_kill_ends_it() -> None:
    process = spawn(["sleep", "30"])
    try:
        with pytest.raises(TimedOut):
            process.wait(0.1)
        assert process.poll() is None
        process.kill()
        assert process.wait() == -signal.SIGKILL
    finally:
        process.close()


def test_poll_reports_the_end_once_it_came() -> None:
    process = spawn(["sh", "-c", "exit 7"])
    try:
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process.poll() == 7 and process.wait() == 7
    finally:
        process.close()


def test_a_missing_command_raises_file_not_found_and_leaks_no_fd() -> None:
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(FileNotFoundError):
        spawn(["/no/such/command"])
    with pytest.raises(FileNotFoundError):
        spawn(["corral-no-such-command-on-path"])
    assert len(os.listdir("/proc/self/fd")) == before


def test_passed_descriptors_are_3_on_and_a_session_leader_is_one(tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        process = spawn(["sh", "-c", "echo here >&3"], fds=[w])
        os.close(w)
        w = -1
        assert process.wait(30) == 0
        process.close()
        assert os.read(r, 100) == b"here\n"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    out = tmp_path / "out"
    stdin = os.open(os.devnull, os.O_RDONLY)
    with out.open("wb") as sink:
        leader = spawn_module.spawn_on(["sh", "-c", 'echo "$(ps -o sid= -p $$) $$"'], stdin,
                                       sink.fileno(), sink.fileno(), setsid=True)
        os.close(stdin)
        assert leader.wait(30) == 0
    sid, pid = out.read_text().split()
    assert sid == pid
