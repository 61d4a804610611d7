"""The stopping dump of a move runs ``criu dump`` itself, with the command line LXC built
for the trial dump of the same container run.

``lxc-checkpoint`` spends ~20-60 ms around CRIU (its configuration parsed, ``criu
--version`` run and checked, one monitor request per cgroup hierarchy for the cgroup roots,
the freezer's path, a fork). The trial dump (``--leave-running``, the instance runs on)
is taken through ``lxc-checkpoint`` with LXC's trace log on, where LXC writes the command
line it runs ("Using command line criu dump …"); that line is kept in the run directory,
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
from pathlib import Path

TRACE_LOG = "lxc-checkpoint-trace.log"
ARGV_FILE = "criu-dump-argv.json"
_MARK = "Using command line "


def trace_options(directory: Path) -> list[str]:
    """Options that make ``lxc-checkpoint`` log (in ``directory``) the CRIU command line."""
    return ["-l", "TRACE", "-o", str(directory / TRACE_LOG)]


def parse(log_text: str, directory: Path) -> list[str] | None:
    """The ``criu dump`` argv LXC logged for a leave-running dump into ``directory`` (None
    when the log has no such line or the line cannot be split back into the same argv:
    LXC joins the arguments with spaces)."""
    lines = [line for line in log_text.splitlines() if _MARK in line]
    if not lines:
        return None
    argv = lines[-1].split(_MARK, 1)[1].split()
    if (len(argv) < 3 or not argv[0].endswith("/criu") or argv[1] != "dump"
            or argv.count("--leave-running") != 1 or argv.count("-D") != 1
            or argv.count("-o") != 1):
        return None
    d, o = argv.index("-D") + 1, argv.index("-o") + 1
    if (d >= len(argv) or o >= len(argv) or argv[d] != str(directory)
            or argv[o] != str(directory / "dump.log")):
        return None  # a path with a space in it (or LXC changed): not taken apart here
    return argv


def record(run_dir: Path, key: str, directory: Path) -> None:
    """After a successful leave-running dump into ``directory``: its logged command line
    kept for ``stopping_argv`` (forgotten when it cannot be read)."""
    log = directory / TRACE_LOG
    try:
        argv = parse(log.read_text(errors="replace"), directory) if key else None
    except OSError:
        argv = None
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
    argv[argv.index("-D") + 1] = str(directory)
    argv[argv.index("-o") + 1] = str(directory / "dump.log")
    if any(was in a for a in argv):  # the trial's directory named anywhere else: not ours
        return None
    return argv
