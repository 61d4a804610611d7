"""The configuration an LXC restore reads (pure): no console, no ttys; unprivileged, the
idmapped root Corral made in place of the loop mount and without ``idmap=container``; the
records kept around a dump (a trial's verdict, the consoles detached before the downtime)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.drivers.lxc.checkpoint import (
    DETACHED,
    IDMAP_ROOT,
    _failure,
    _restore_config,
    _take_detached,
    cgroup_race,
    dumpable_key,
)

MiB = 1024**2


def _spec(privileged: bool) -> InstanceSpec:
    return InstanceSpec(id=101, name="ct1", kind=Kind.CT, template="tiny",
                        resources=Resources(memory=64 * MiB, disk=64 * MiB),
                        directory=Path("/srv/i/101"), privileged=privileged)


def test_unprivileged_restore_config_points_at_the_idmapped_root() -> None:
    spec = _spec(False)
    text = (f"lxc.uts.name = ct1\nlxc.rootfs.path = dir:{spec.run_dir / 'rootfs'}\n"
            "lxc.rootfs.options = idmap=container\nlxc.tty.max = 1\n")
    root = spec.run_dir / IDMAP_ROOT
    lines = _restore_config(text, spec, root).splitlines()
    assert f"lxc.rootfs.path = dir:{root}" in lines
    assert not any("idmap=container" in line or "rootfs'}" in line for line in lines)
    assert lines[-2:] == ["lxc.console.path = none", "lxc.tty.max = 0"]


def test_unprivileged_restore_config_binds_the_idmapped_data_disks() -> None:
    spec = _spec(False)
    disk = spec.run_dir / "disks" / "data"
    idmapped = spec.run_dir / "disks-idmap" / "data"
    text = (f"lxc.mount.entry = {disk} srv/data none bind,create=dir,idmap=container 0 0\n"
            f"lxc.hook.post-stop = /bin/sh -c 'umount {disk} || true'\n")
    lines = _restore_config(text, spec, None, {disk: idmapped}).splitlines()
    assert lines[0] == f"lxc.mount.entry = {idmapped} srv/data none bind,create=dir 0 0"
    assert lines[1] == f"lxc.hook.post-stop = /bin/sh -c 'umount {disk} || true'"


def test_privileged_restore_config_keeps_the_loop_mount() -> None:
    spec = _spec(True)
    text = f"lxc.rootfs.path = dir:{spec.run_dir / 'rootfs'}\n"
    assert _restore_config(text, spec, None) == (
        text + "lxc.console.path = none\nlxc.tty.max = 0\n")


def test_tty_group_read_from_the_container(tmp_path: Path) -> None:
    from corral.drivers.lxc.checkpoint import TTY_GID, tty_gid

    (tmp_path / "etc").mkdir()
    group = tmp_path / "etc" / "group"
    group.write_text("root:x:0:\ntty:x:7:\nusers:x:100:\n")
    assert tty_gid(tmp_path, 65536) == 7
    assert tty_gid(tmp_path, 7) == TTY_GID  # outside the container's mapped range
    group.write_text("root:x:0:\n")
    assert tty_gid(tmp_path, 65536) == TTY_GID  # none named tty
    group.unlink()
    outside = tmp_path / "host-group"
    outside.write_text("tty:x:9:\n")
    group.symlink_to(outside)  # a link the guest made: not followed
    assert tty_gid(tmp_path, 65536) == TTY_GID
    group.unlink()
    (tmp_path / "etc").rmdir()
    (tmp_path / "group").write_text("tty:x:9:\n")
    (tmp_path / "etc").symlink_to(tmp_path)  # etc itself a link
    assert tty_gid(tmp_path, 65536) == TTY_GID


def test_a_trial_dumps_verdict_holds_for_one_run_and_configuration(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("lxc.uts.name = ct1\n")
    pid = os.getpid()
    key = dumpable_key(config, pid)
    assert key and key == dumpable_key(config, pid)
    with subprocess.Popen(["sleep", "5"]) as other:  # another run: another init
        assert dumpable_key(config, other.pid) not in ("", key)
        other.kill()
    config.write_text("lxc.uts.name = ct1\nlxc.net.0.type = veth\n")
    assert dumpable_key(config, pid) != key
    config.unlink()
    assert dumpable_key(config, pid) == ""


def test_detached_consoles_are_taken_once_and_only_by_the_same_run(tmp_path: Path) -> None:
    spec = InstanceSpec(id=101, name="ct1", kind=Kind.CT, template="tiny",
                        resources=Resources(memory=64 * MiB, disk=64 * MiB),
                        directory=tmp_path, privileged=False)
    spec.run_dir.mkdir(parents=True)
    record = {"pid": 42, "binds": {"/dev/console": "/0"}, "console": "tty[8800:2f]"}
    (spec.run_dir / DETACHED).write_text(json.dumps(record))
    assert _take_detached(spec, 43) is None  # another run's: not used, and dropped
    assert not (spec.run_dir / DETACHED).exists()
    (spec.run_dir / DETACHED).write_text(json.dumps(record))
    assert _take_detached(spec, 42) == ({"/dev/console": "/0"}, "tty[8800:2f]")
    assert _take_detached(spec, 42) is None


def test_a_dump_failure_says_what_to_do_and_leaves_criu_noise_out(tmp_path: Path) -> None:
    """A process an exec left behind (its session leader outside): the plain reason and the
    command that ends it come first, CRIU's own lines after; its RLIMIT_NOFILE complaint
    (every unprivileged run) and iptables probes are not shown."""
    (tmp_path / "dump.log").write_text(
        "(00.001014) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self: "
        "Operation not permitted\n"
        "(00.002) Error (criu/net.c:1): iptables-restore probe\n"
        "(00.099542) Error (criu/cr-dump.c:1664): A session leader of 26481(26) is outside "
        "of its pid namespace\n"
        "(00.115811) Error (criu/cr-dump.c:2111): Dumping FAILED.\n")
    text = _failure("dump", _spec(False), tmp_path, b"Checkpointing 101 failed\n").message
    assert text.startswith("CRIU dump of container 'ct1' failed: process 26 in the container "
                           "was left behind by an exec"), text
    assert "`corral exec ct1 -- kill 26`" in text
    assert "A session leader of 26481(26)" in text and "Dumping FAILED" in text
    assert "RLIMIT_NOFILE" not in text and "iptables" not in text
    (tmp_path / "dump.log").write_text("(00.1) Error (criu/x.c:1): something else\n")
    plain = _failure("dump", _spec(False), tmp_path, b"").message
    assert plain == "CRIU dump of container 'ct1' failed: (00.1) Error (criu/x.c:1): something else"


def test_a_restore_that_failed_making_its_cgroups_is_a_race_to_try_again() -> None:
    raced = (
        "(00.004107) Warn  (criu/kerndat.c:1) something\n"
        "(00.051000) Error (criu/util.c:926): couldn't mkdirpat directory "
        "cpu//crl/ct/101: No such file or directory\n"
        "(00.051020) Error (criu/cgroup.c:1805): cg: Can't make cgroup dir "
        "cpu//crl/ct/101: No such file or directory\n"
        "(00.062515) Error (criu/cr-restore.c:2320): Restoring FAILED.\n")
    assert cgroup_race(raced)
    assert cgroup_race("(00.01) Error (criu/cgroup.c:1800): cg: Cgroup dir cpu//x doesn't exist\n")
    # a failure after the tasks were forked is not retried
    later = ("(00.059410) Error (criu/cr-restore.c:2080): Can't attach to init: "
             "Operation not permitted\n"
             "(00.063813) Error (criu/cgroup.c:1998): cg: cgroupd: recv req error: "
             "No such file or directory\n")
    assert not cgroup_race(later)
    assert not cgroup_race("")
