"""The stopping dump's CRIU command line, made from the one LXC ran for a trial dump."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.drivers.lxc import criuargs

REL = "corral-a/ct/101"


def lxc_argv(directory: Path, pid: int, tty: str = "tty[0:41]") -> list[str]:
    """What LXC 5.0.2 ran for ``lxc-checkpoint -v`` here (read from /proc, one real run)."""
    return [
        "/usr/local/sbin/criu", "dump", "--tcp-established", "--file-locks", "--link-remap",
        "--manage-cgroups=full", "--ext-mount-map", "auto", "--enable-external-sharing",
        "--enable-external-masters", "--enable-fs", "hugetlbfs", "--enable-fs", "tracefs",
        "-D", str(directory), "-o", f"{directory}/dump.log",
        "--cgroup-root", f"name=systemd:/{REL}", "--cgroup-root", f"pids:/{REL}",
        "--cgroup-root", f"cpu:/{REL}", "-v4",
        "--ext-mount-map", "/sys/fs/fuse/connections:sys/fs/fuse/connections",
        "--ext-mount-map", "/srv/data:srv/data", "-t", str(pid), "--skip-in-flight",
        "--freeze-cgroup", f"/sys/fs/cgroup/freezer//{REL}", "--ext-mount-map",
        "/dev/console:console", "--external", tty, "--force-irmap", "--leave-running"]


def test_a_trial_line_becomes_the_stopping_dump_of_another_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(criuargs, "console_id", lambda pid: "tty[0:77]")
    trial, final = tmp_path / "trial", tmp_path / "final"
    found = criuargs.template(lxc_argv(trial, 4242), trial, 4242, REL)
    assert found is not None
    assert not any(str(trial) in a or "4242" in a or REL in a for a in found)
    other = "corral-b/ct/105"
    made = criuargs.fill(found, final, 777, other)
    assert made is not None
    expected = [a.replace(REL, other) for a in lxc_argv(final, 777, "tty[0:77]")
                if a not in ("-v4", "--leave-running")]
    assert made == expected


def test_what_is_not_understood_is_not_used(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    argv = lxc_argv(trial, 4242)
    assert criuargs.template(argv, tmp_path / "elsewhere", 4242, REL) is None
    assert criuargs.template(argv, trial, 4243, REL) is None
    assert criuargs.template(argv, trial, 4242, "corral-a/ct/102") is None
    assert criuargs.template([*argv, "-t", "1"], trial, 4242, REL) is None
    assert criuargs.template(None, trial, 4242, REL) is None
    restore = [a if a != "dump" else "restore" for a in argv]
    assert criuargs.template(restore, trial, 4242, REL) is None


def test_kept_for_one_run_and_host_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       ) -> None:
    monkeypatch.setattr(criuargs, "console_id", lambda pid: "tty[0:77]")
    trial, final, images = tmp_path / "trial", tmp_path / "final", tmp_path / "images"
    images.mkdir()
    criuargs.record(tmp_path, "run-1", trial, lxc_argv(trial, 4242), 4242, REL)
    assert criuargs.stopping_argv(tmp_path, "run-2", final, 4242, REL) is None
    made = criuargs.stopping_argv(tmp_path, "run-1", final, 4242, REL)
    assert made is not None and made[made.index("-D") + 1] == str(final)
    # the stopping dump's line travels with its images; a restore here keeps it
    criuargs.leave_in_images(images, lxc_argv(images, 4242), 4242, REL)
    criuargs.adopt(tmp_path, "run-3", images)
    assert criuargs.stopping_argv(tmp_path, "run-3", final, 99, REL) is not None
    # ... unless this host's CRIU or cgroup mounts differ
    monkeypatch.setattr(criuargs, "host_mark", lambda: "another host")
    criuargs.adopt(tmp_path, "run-4", images)
    assert criuargs.stopping_argv(tmp_path, "run-4", final, 99, REL) is None
    criuargs.forget(tmp_path)
    assert criuargs.stopping_argv(tmp_path, "run-1", final, 4242, REL) is None


def test_freeze_group_reads_the_freeze_cgroup_of_a_command_line(tmp_path: Path) -> None:
    argv = ["criu", "dump", "--freeze-cgroup", str(tmp_path), "-t", "1"]
    assert criuargs.freeze_group(argv) == tmp_path
    assert criuargs.freeze_group(["criu", "dump", "-t", "1"]) is None
    assert criuargs.freeze_group(["criu", "dump", "--freeze-cgroup"]) is None
