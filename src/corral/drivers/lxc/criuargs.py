"""The stopping dump of a move runs ``criu dump`` itself, with the command line LXC built
for the trial dump of the same container run.

``lxc-checkpoint`` spends ~20-60 ms around CRIU (its configuration parsed, ``criu
--version`` run and checked, one monitor request per cgroup hierarchy for the cgroup roots,
the freezer's path, a fork). The trial dump (``--leave-running``, the instance runs on)
is taken through ``lxc-checkpoint`` while Corral reads the command line of the CRIU that
LXC runs (``/proc/<its child>/cmdline``, the exact argv); that line is kept in the run
directory,
tied to the container's run and configuration (``checkpoint.dumpable_key``, as the trial's
verdict is), and the stopping dump runs it with the images directory and log changed and
``--leave-running`` left out: the same options as LXC's own stopping dump (``-s``). CRIU
then kills the tasks and the container's monitor, seeing its init gone, tears down as
after ``lxc-checkpoint -s`` (nothing in LXC's dump path talks to the monitor after CRIU).
The images are the same, so the target (and a roll-back on the source) restore them with
``lxc-checkpoint -r``. Without a recorded line for this run, ``lxc-checkpoint`` is used.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from corral.host.spawn import Spawned

ARGV_FILE = "criu-dump-argv.json"
WATCH_EVERY = 0.001


def watch(process: Spawned) -> list[str] | None:
    """While ``lxc-checkpoint`` (``process``) runs: the argv of the ``criu dump`` it runs as
    its child, read once the child has executed CRIU (None if none was seen)."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    while process.poll() is None:
        try:
            pids = children.read_text().split()
        except OSError:
            pids = []
        for pid in pids:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
            except OSError:
                continue
            if len(argv) > 1 and argv[0].endswith(b"/criu") and argv[1] == b"dump":
                return [os.fsdecode(a) for a in argv]
        time.sleep(WATCH_EVERY)
    return None


def usable(argv: list[str] | None, directory: Path) -> list[str] | None:
    """``argv`` if it is a leave-running ``criu dump`` into ``directory`` with its log
    there, as LXC runs it (else None: LXC changed, nothing is guessed)."""
    if (argv is None or len(argv) < 3 or argv[1] != "dump"
            or argv.count("--leave-running") != 1 or argv.count("-D") != 1
            or argv.count("-o") != 1 or argv[-1] == "-D" or argv[-1] == "-o"):
        return None
    if (argv[argv.index("-D") + 1] != str(directory)
            or argv[argv.index("-o") + 1] != str(directory / "dump.log")):
        return None
    return argv


def record(run_dir: Path, key: str, directory: Path, argv: list[str] | None) -> None:
    """After a successful leave-running dump into ``directory`` whose CRIU ran ``argv``:
    the command line kept for ``stopping_argv`` (forgotten when it is not usable)."""
    argv = usable(argv, directory) if key else None
    with contextlib.suppress(OSError):
        if argv is None:
            (run_dir / ARGV_FILE).unlink(missing_ok=True)
        else:
            (run_dir / ARGV_FILE).write_text(
                json.dumps({"key": key, "argv": argv, "directory": str(directory)}))


def forget(run_dir: Path) -> None:
    (run_dir / ARGV_FILE).unlink(missing_ok=True)


def stopping_argv(run_dir: Path, key: str, directory: Path) -> list[str] | None:
    """The recorded command line made into a stopping dump into ``directory`` (None when
    none was recorded for this run and configuration, ``key``)."""
    try:
        found = json.loads((run_dir / ARGV_FILE).read_text())
        argv = [str(a) for a in found["argv"]]
        was = str(found["directory"])
        if not key or found["key"] != key:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    argv.remove("--leave-running")
    argv = [a for a in argv if a != "-v4"]  # the trial's verbosity (``lxc-checkpoint -v``)
    argv[argv.index("-D") + 1] = str(directory)
    argv[argv.index("-o") + 1] = str(directory / "dump.log")
    if any(was in a for a in argv):  # the trial's directory named anywhere else: not ours
        return None
    return argv


def dump_argv(lxc_checkpoint: list[str], run_dir: Path, key: str, directory: Path,
              stop: bool) -> tuple[list[str], str]:
    """The command of a dump into ``directory`` and its name (a phase's): a stopping dump
    runs the recorded CRIU command line where there is one for this run (``key``), else
    ``lxc-checkpoint -s``; a trial (leave-running) dump runs ``lxc-checkpoint -v`` (its
    CRIU's argv is read by ``watch``). ``lxc_checkpoint``: the tool with the container's
    name and LXC path."""
    base = [*lxc_checkpoint, "-D", str(directory)]
    if not stop:
        return [*base, "-v"], "lxc-checkpoint"
    direct = stopping_argv(run_dir, key, directory)
    if direct is not None:
        return direct, "criu dump"
    return [*base, "-s"], "lxc-checkpoint"
