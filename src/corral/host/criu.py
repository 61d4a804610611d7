"""Whether CRIU (container checkpoint/restore) works on this host, and why not.

CRIU is optional and detected, never assumed: a binary being installed means little (Debian
12's 3.17 is installed yet fails on recent kernels), so the verdict is ``criu check``'s.
``scripts/install-criu.sh`` builds a pinned, patched CRIU into ``/usr/local/sbin`` where the
host's own does not work; that one is preferred over whatever else is on ``PATH``. One probe
for every user (``host info``, snapshots with memory, migration) so they agree.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from corral.domain.errors import HostFailure
from corral.host.run import run

BUILT = "/usr/local/sbin/criu"  # where scripts/install-criu.sh installs its build
KDAT_DIR = Path("/dev/shm/corral-criu")
"""Where the CRIU that install-criu.sh builds keeps its cache of the kernel's features
(``criu.kdat``; make ``RUNDIR``). CRIU keeps that cache only on a tmpfs and by default in
``/run``, which is not one on every host (this Firecracker VM's is ext4): there every dump and
every restore probed the kernel again (~30-80 ms each here). Root's and 0700, made by
``kdat_dir`` (again after a reboot) before CRIU runs; without it CRIU only loses the cache."""


def kdat_dir() -> None:
    """Make ``KDAT_DIR`` root's own 0700 directory, replacing whatever else is there (a
    name in the world-writable /dev/shm that someone else took: a kernel-feature cache
    written by another user must not steer root's CRIU)."""
    if os.geteuid() != 0:
        return
    try:
        st = os.lstat(KDAT_DIR)
    except FileNotFoundError:
        st = None
    except OSError:
        return
    if (st is not None and stat.S_ISDIR(st.st_mode) and st.st_uid == 0
            and stat.S_IMODE(st.st_mode) == 0o700):
        return
    with contextlib.suppress(OSError):
        if st is not None and stat.S_ISDIR(st.st_mode):
            shutil.rmtree(KDAT_DIR)
        elif st is not None:
            KDAT_DIR.unlink()
        KDAT_DIR.mkdir(mode=0o700)
        os.chown(KDAT_DIR, 0, 0)
        KDAT_DIR.chmod(0o700)


@dataclass(frozen=True)
class CriuStatus:
    works: bool
    path: str | None
    version: str | None
    verdict: str  # `criu check`'s last line, or why it could not run

    @property
    def reason(self) -> str:
        """One line for users: what works, or why it does not."""
        if self.path is None:
            return self.verdict
        what = f"CRIU {self.version or '(version unknown)'} ({self.path})"
        return f"{what}: `criu check`: {self.verdict}"


def binary() -> str | None:
    """The CRIU to use: the one install-criu.sh built, else the first on PATH (or sbin)."""
    if os.access(BUILT, os.X_OK):
        return BUILT
    return shutil.which("criu") or shutil.which("criu", path="/usr/sbin:/sbin")


def _last_line(out: bytes, err: bytes) -> str:
    said = (out + err).decode(errors="replace").strip().splitlines()
    return said[-1].strip() if said else ""


def probe(path: str | None = None) -> CriuStatus:
    """``criu --version`` and ``criu check`` of ``path`` (default: ``binary()``)."""
    path = path or binary()
    if path is None:
        return CriuStatus(False, None, None, "criu is not installed")
    version = None
    kdat_dir()
    try:
        ver = run([path, "--version"], check=False, timeout=10)
        match = re.search(rb"Version:\s*(\S+)", ver.stdout + ver.stderr)
        version = match.group(1).decode() if match else None
        proc = run([path, "check"], check=False, timeout=60)
    except (HostFailure, OSError) as exc:
        return CriuStatus(False, path, version, f"did not run: {exc}")
    last = _last_line(proc.stdout, proc.stderr)
    if proc.returncode != 0:
        return CriuStatus(False, path, version, f"failed (exit {proc.returncode}): "
                          + (last or "no output"))
    return CriuStatus(True, path, version, last or "passed")
