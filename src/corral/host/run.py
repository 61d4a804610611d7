"""Running host commands: one place, logged, with failures turned into HostFailure."""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from corral.domain.errors import HostFailure, Unsupported

log = logging.getLogger("corral.host")
T = TypeVar("T")


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


def run_while(
    argv: Sequence[str], during: Callable[[subprocess.Popen[bytes]], T], *,
    timeout: float | None = 120,
) -> tuple[subprocess.CompletedProcess[bytes], T]:
    """``run`` that calls ``during(process)`` on this thread while the command runs (work
    that overlaps the command's own start-up), then waits for it and checks its exit. An
    exception from ``during`` is raised once the command has ended."""
    log.debug("run %s", " ".join(argv))
    try:
        process = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError as exc:
        raise HostFailure(f"'{argv[0]}' is not installed on this host") from exc
    try:
        result = during(process)
    except BaseException:
        with contextlib.suppress(HostFailure):  # the first failure is the one to report
            _finish(process, argv, timeout)
        raise
    return _finish(process, argv, timeout), result


def _finish(process: subprocess.Popen[bytes], argv: Sequence[str],
            timeout: float | None) -> subprocess.CompletedProcess[bytes]:
    """Wait for ``process`` (killed past ``timeout``); HostFailure on a non-zero exit."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        process.kill()
        process.communicate()
        raise HostFailure(f"'{' '.join(argv)}' did not finish within {timeout} s") from exc
    if process.returncode != 0:
        said = (stderr or stdout).decode(errors="replace").strip()
        raise HostFailure(f"'{' '.join(argv[:3])}' failed (exit {process.returncode}): {said}")
    return subprocess.CompletedProcess(list(argv), process.returncode, stdout, stderr)


def output(argv: Sequence[str], **kwargs: object) -> str:
    """Stdout of a successful ``run`` as text."""
    return run(argv, **kwargs).stdout.decode(errors="replace")  # type: ignore[arg-type]
