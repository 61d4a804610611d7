"""Running host commands: one place, logged, with failures turned into HostFailure."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from corral.domain.errors import HostFailure, Unsupported

log = logging.getLogger("corral.host")


def require_tool(name: str, package: str) -> str:
    """Absolute path of ``name`` or Unsupported naming the Debian package that provides it."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        raise Unsupported(f"'{name}' is not installed on this host (Debian package: {package})")
    return path


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = 120,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv``; on a non-zero exit (with ``check``) raise HostFailure with its stderr."""
    log.debug("run %s", " ".join(argv))
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except FileNotFoundError as exc:
        raise HostFailure(f"'{argv[0]}' is not installed on this host") from exc
    except subprocess.TimeoutExpired as exc:
        raise HostFailure(f"'{' '.join(argv)}' did not finish within {timeout} s") from exc
    if check and proc.returncode != 0:
        said = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        raise HostFailure(f"'{' '.join(argv[:3])}' failed (exit {proc.returncode}): {said}")
    return proc


def output(argv: Sequence[str], **kwargs: object) -> str:
    """Stdout of a successful ``run`` as text."""
    return run(argv, **kwargs).stdout.decode(errors="replace")  # type: ignore[arg-type]
