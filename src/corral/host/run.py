"""Running host commands: one place, logged, with failures turned into HostFailure."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from corral.domain.errors import HostFailure, Unsupported
from corral.host.spawn import Spawned, TimedOut, spawn

log = logging.getLogger("corral.host")
T = TypeVar("T")


class CommandTimedOut(HostFailure):
    """A command ``run`` killed at its deadline."""


_FOUND: dict[tuple[str, str | None], str] = {}
"""(tool, PATH) -> where ``require_tool`` found it: every container start asks for
``lxc-start``, and ``shutil.which`` walks PATH with a stat per directory (~0.14 ms here)."""


def require_tool(name: str, package: str) -> str:
    """Absolute path of ``name`` or Unsupported naming the Debian package that provides it.
    A path found before is kept while PATH is the same and the file is still executable."""
    key = (name, os.environ.get("PATH"))
    path = _FOUND.get(key)
    if path is not None and os.access(path, os.X_OK):
        return path
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        _FOUND.pop(key, None)
        raise Unsupported(f"'{name}' is not installed on this host (Debian package: {package})")
    _FOUND[key] = path
    return path


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = 120,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    fds: Sequence[int] = (),
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` (``host.spawn``: stdin /dev/null or ``input``; ``fds`` as 3, 4, …); on a
    non-zero exit (with ``check``) raise HostFailure with its stderr. Killed past ``timeout``
    seconds."""
    log.debug("run %s", " ".join(argv))
    return _finish(_start(argv, input, env, fds), argv, timeout, check)


def run_while(
    argv: Sequence[str], during: Callable[[Spawned], T], *,
    timeout: float | None = 120, check: bool = True, env: Mapping[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[bytes], T]:
    """``run`` that calls ``during(process)`` on this thread while the command runs (work
    that overlaps the command's own start-up), then waits for it and (``check``) checks its
    exit. An exception from ``during`` is raised once the command has ended."""
    log.debug("run %s", " ".join(argv))
    process = _start(argv, None, env)
    try:
        result = during(process)
    except BaseException:
        with contextlib.suppress(HostFailure):  # the first failure is the one to report
            _finish(process, argv, timeout, check)
        raise
    return _finish(process, argv, timeout, check), result


def _start(argv: Sequence[str], input: bytes | None,
           env: Mapping[str, str] | None, fds: Sequence[int] = ()) -> Spawned:
    try:
        return spawn(argv, input=input, env=env, fds=fds)
    except FileNotFoundError as exc:
        raise HostFailure(f"'{argv[0]}' is not installed on this host") from exc


def _finish(process: Spawned, argv: Sequence[str], timeout: float | None,
            check: bool) -> subprocess.CompletedProcess[bytes]:
    """Wait for ``process`` (killed past ``timeout``); with ``check``, HostFailure on a
    non-zero exit."""
    try:
        try:
            returncode = process.wait(timeout)
        except TimedOut as exc:
            process.kill()
            process.wait()
            raise CommandTimedOut(f"'{' '.join(argv)}' did not finish within {timeout} s") \
                from exc
        stdout, stderr = process.output()
    finally:
        process.close()
    if check and returncode != 0:
        said = (stderr or stdout).decode(errors="replace").strip()
        raise HostFailure(f"'{' '.join(argv[:3])}' failed (exit {returncode}): {said}")
    return subprocess.CompletedProcess(list(argv), returncode, stdout, stderr)


def output(argv: Sequence[str], **kwargs: object) -> str:
    """Stdout of a successful ``run`` as text."""
    return run(argv, **kwargs).stdout.decode(errors="replace")  # type: ignore[arg-type]


def run_python_apart(code: str, *args: str) -> str | None:
    """``code`` run by a child Python with ``args`` as ``sys.argv[1:]``: work whose imports
    corrald must not keep for its life (Alembic, cryptography). None when it succeeded, else
    what went wrong: its last line of stderr, or its exit status."""
    done = run([sys.executable, "-c", code, *args], check=False, timeout=None)
    if done.returncode == 0:
        return None
    said = done.stderr.decode(errors="replace").strip().splitlines()
    return said[-1] if said else f"exit {done.returncode}"
