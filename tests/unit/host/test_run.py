"""host.run.run_while: work overlapping a command, errors after it ended."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.domain.errors import HostFailure, Unsupported
from corral.host.run import require_tool, run, run_while
from corral.host.spawn import Spawned


def test_during_runs_while_the_command_runs_and_its_result_is_returned() -> None:
    def during(process: Spawned) -> bool:
        return process.poll() is None  # the command (sleep) is still running

    done, still_running = run_while(["sh", "-c", "sleep 0.3; echo out"], during)
    assert still_running is True
    assert done.returncode == 0 and done.stdout == b"out\n"


def test_a_failing_command_raises_with_its_stderr() -> None:
    with pytest.raises(HostFailure, match=r"exit 3.*broken"):
        run_while(["sh", "-c", "echo broken >&2; exit 3"], lambda _p: None)


def test_an_error_in_during_is_raised_after_the_command_ended() -> None:
    seen: list[Spawned] = []

    def during(process: Spawned) -> None:
        seen.append(process)
        raise HostFailure("cgroup gone")

    with pytest.raises(HostFailure, match="cgroup gone"):
        run_while(["sh", "-c", "sleep 0.1"], during)
    assert seen[0].returncode == 0  # waited for, not left as a zombie


def test_timeout_kills_the_command() -> None:
    with pytest.raises(HostFailure, match="did not finish"):
        run_while(["sleep", "30"], lambda _p: None, timeout=0.2)


def test_run_keeps_stdout_and_stderr_apart_and_feeds_input() -> None:
    done = run(["sh", "-c", "cat; echo err >&2"], input=b"in\n")
    assert (done.stdout, done.stderr) == (b"in\n", b"err\n")


def test_run_with_check_off_returns_a_failure() -> None:
    done = run(["sh", "-c", "echo no >&2; exit 4"], check=False)
    assert done.returncode == 4 and done.stderr == b"no\n"


def test_a_missing_command_is_a_clear_host_failure() -> None:
    with pytest.raises(HostFailure, match="'no-such-tool-here' is not installed"):
        run(["no-such-tool-here"])


def test_run_timeout_kills_the_command() -> None:
    with pytest.raises(HostFailure, match=r"did not finish within 0\.2 s"):
        run(["sleep", "30"], timeout=0.2)


def test_require_tool_follows_path_and_a_removed_tool(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The found path is kept (no PATH walk per start), but never past a change of PATH or
    the tool going away."""
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
        tool = folder / "corral-test-tool"
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(first))
    assert require_tool("corral-test-tool", "none") == str(first / "corral-test-tool")
    assert require_tool("corral-test-tool", "none") == str(first / "corral-test-tool")
    monkeypatch.setenv("PATH", str(second))
    assert require_tool("corral-test-tool", "none") == str(second / "corral-test-tool")
    (second / "corral-test-tool").unlink()
    with pytest.raises(Unsupported, match="'corral-test-tool' is not installed"):
        require_tool("corral-test-tool", "none")
