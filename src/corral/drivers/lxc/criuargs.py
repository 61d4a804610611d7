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
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from corral.host.spawn import Spawned

ARGV_FILE = "criu-dump-argv.json"
IN_IMAGES = "corral-criu-dump.json"
WATCH_EVERY = 0.001
DIR, PID, CGROUP, TTY = "{corral:dir}", "{corral:pid}", "{corral:cgroup}", "{corral:tty}"


def freeze_group(argv: list[str]) -> Path | None:
    """The freezer group a ``criu dump`` command line names (``--freeze-cgroup``): a move's
    stopping dump freezes it first (host/freezer.py); CRIU takes a frozen group as it is
    and leaves the thawing to whoever froze it."""
    if "--freeze-cgroup" not in argv[:-1]:
        return None
    return Path(argv[argv.index("--freeze-cgroup") + 1])


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


def host_mark() -> str:
    """What LXC's command line depends on beyond the container: the CRIU it runs and the
    host's cgroup mounts (each hierarchy is a ``--cgroup-root``)."""
    mounts = sorted(line.split(" - ", 1)[0].split()[4]
                    for line in Path("/proc/self/mountinfo").read_text().splitlines()
                    if " - cgroup" in line)
    return hashlib.sha256("\n".join([shutil.which("criu") or "", *mounts]).encode()
                          ).hexdigest()


def template(argv: list[str] | None, directory: Path, pid: int, rel: str) -> list[str] | None:
    """LXC's ``criu dump`` argv of a dump into ``directory`` of the container whose init is
    ``pid`` and whose cgroup is ``rel`` (relative), with those put as placeholders,
    ``--leave-running`` and ``-v4`` dropped; None when it is not such a command line or
    anything in it is not understood (LXC changed: nothing is guessed)."""
    if (argv is None or len(argv) < 3 or argv[1] != "dump" or not rel
            or any(argv.count(flag) != 1 for flag in ("-D", "-o", "-t"))
            or argv[-1] in ("-D", "-o", "-t")):
        return None
    out = [a for a in argv if a not in ("--leave-running", "-v4")]
    d, o, t = (out.index(flag) + 1 for flag in ("-D", "-o", "-t"))
    if (out[d] != str(directory) or out[o] != str(directory / "dump.log")
            or out[t] != str(pid)):
        return None
    out[d], out[o], out[t] = DIR, f"{DIR}/dump.log", PID
    for i, arg in enumerate(out[:-1]):
        value = out[i + 1]
        if arg in ("--cgroup-root", "--freeze-cgroup"):
            if not value.endswith("/" + rel):
                return None
            out[i + 1] = value[:-len(rel)] + CGROUP
        elif arg == "--external" and value.startswith("tty["):
            out[i + 1] = TTY
    if any(str(directory) in a or rel in a for a in out):
        return None
    return out


def console_id(pid: int) -> str | None:
    """LXC's name of the console at a dump: ``tty[rdev:dev]`` of the container's
    /dev/console (as it is then: Corral has detached its pty bind)."""
    try:
        st = os.stat(f"/proc/{pid}/root/dev/console")
    except OSError:
        return None
    return f"tty[{st.st_rdev:x}:{st.st_dev:x}]"


def fill(found: list[str], directory: Path, pid: int, rel: str) -> list[str] | None:
    """A template made into the command line of a stopping dump into ``directory``."""
    tty = console_id(pid) if TTY in found else ""
    if tty is None:
        return None
    values = {DIR: str(directory), PID: str(pid), CGROUP: rel, TTY: tty}
    out = []
    for arg in found:
        for mark, value in values.items():
            arg = arg.replace(mark, value)
        out.append(arg)
    return out


def _save(path: Path, key: str, found: list[str] | None) -> None:
    with contextlib.suppress(OSError):
        if found is None or not key:
            path.unlink(missing_ok=True)
        else:
            path.write_text(json.dumps({"key": key, "host": host_mark(), "argv": found}))


def _load(path: Path) -> tuple[str, str, list[str]] | None:
    try:
        found = json.loads(path.read_text())
        return str(found["key"]), str(found["host"]), [str(a) for a in found["argv"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record(run_dir: Path, key: str, directory: Path, argv: list[str] | None, pid: int,
           rel: str) -> None:
    """After a successful dump into ``directory`` whose CRIU ran ``argv`` (a trial's, read
    by ``watch``): its template kept for this run's stopping dump (forgotten when it is not
    understood)."""
    _save(run_dir / ARGV_FILE, key, template(argv, directory, pid, rel))


def leave_in_images(directory: Path, argv: list[str] | None, pid: int, rel: str) -> None:
    """After a stopping dump into ``directory`` that ran ``argv``: its template left with
    the images, for ``adopt`` after their restore."""
    _save(directory / IN_IMAGES, "any", template(argv, directory, pid, rel))


def adopt(run_dir: Path, key: str, directory: Path) -> None:
    """After a restore from ``directory``: the template its dump left there kept for the
    restored run (``key``) if this host's CRIU and cgroup mounts are the dump's."""
    found = _load(directory / IN_IMAGES)
    if found is None or found[1] != host_mark():
        forget(run_dir)
        return
    _save(run_dir / ARGV_FILE, key, found[2])


def forget(run_dir: Path) -> None:
    (run_dir / ARGV_FILE).unlink(missing_ok=True)


def stopping_argv(run_dir: Path, key: str, directory: Path, pid: int, rel: str,
                  ) -> list[str] | None:
    """The kept command line made into a stopping dump into ``directory`` (None when none
    was kept for this run and configuration, ``key``, or this host)."""
    found = _load(run_dir / ARGV_FILE)
    if found is None or not key or found[0] != key or found[1] != host_mark():
        return None
    return fill(found[2], directory, pid, rel)


def dump_argv(lxc_checkpoint: list[str], run_dir: Path, key: str, directory: Path,
              stop: bool, pid: int, rel: str) -> tuple[list[str], str]:
    """The command of a dump into ``directory`` and its name (a phase's): a stopping dump
    runs the kept CRIU command line where there is one for this run (``key``), else
    ``lxc-checkpoint -s``; a trial (leave-running) dump runs ``lxc-checkpoint -v``. Either
    ``lxc-checkpoint`` has its CRIU's argv read by ``watch``. ``lxc_checkpoint``: the tool
    with the container's name and LXC path."""
    base = [*lxc_checkpoint, "-D", str(directory)]
    if not stop:
        return [*base, "-v"], "lxc-checkpoint"
    direct = stopping_argv(run_dir, key, directory, pid, rel)
    if direct is not None:
        return direct, "criu dump"
    return [*base, "-s"], "lxc-checkpoint"
