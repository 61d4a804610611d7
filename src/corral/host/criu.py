"""Whether CRIU (container checkpoint/restore) works on this host, and why not.

CRIU is optional and detected, never assumed: a binary being installed means little (Debian
12's 3.17 is installed yet fails on recent kernels), so the verdict is ``criu check``'s.
``scripts/install-criu.sh`` builds a pinned, patched CRIU into ``/usr/local/sbin`` where the
host's own does not work; that one is preferred over whatever else is on ``PATH``. One probe
for every user (``host info``, snapshots with memory, migration) so they agree.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass

from corral.domain.errors import HostFailure
from corral.host.run import run

BUILT = "/usr/local/sbin/criu"  # where scripts/install-criu.sh installs its build


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
