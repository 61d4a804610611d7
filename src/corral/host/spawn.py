"""Starting a host command with ``posix_spawn``, its output in memory files, its end awaited
on a pidfd.

Why not ``subprocess``: on every container start the daemon runs ``mount`` and ``lxc-start``,
on every VM start ``qemu-system-x86_64``; a trace of bench/start.py showed each taking
~1 ms longer when corrald ran it through ``subprocess.run`` than the same command run
by the bench (docs/perf-log.md, "Start-path costs"). ``subprocess`` walks a good deal
of Python per command (Popen's set-up, an exec-status pipe, a selector loop on two
output pipes until *every* holder closed them, and with a timeout a wait that polls with
sleeps of 0.5, 1, 2 ... ms); on this host that code is cold between starts. Here:

* glibc's ``posix_spawnp`` (``clone(CLONE_VM|CLONE_VFORK)`` and exec, in C), called
  through ctypes so that the GIL is let go meanwhile (``host/libcspawn.py``; CPython's
  ``os.posix_spawnp`` holds it until the child has exec'd), ``os.posix_spawnp`` where
  libc lacks it;
* stdout and stderr go to two ``memfd`` files, read once the command has exited: no pipe
  to drain while it runs, no deadlock on large output, and a daemonizing command (``qemu
  -daemonize``, ``lxc-start -d``) or a background grandchild that keeps the descriptors
  cannot hold the caller until it lets go of them;
* stdin is ``/dev/null``, or a memfd holding the ``input`` bytes;
* the end is awaited by polling a pidfd (one wake-up when the process exits), then
  ``waitpid``.

As with ``subprocess``'s defaults, the child gets SIGPIPE and SIGXFSZ back at their default
action (Python ignores SIGPIPE), an empty signal mask, and none of the daemon's descriptors
but 0-2: every descriptor Python opens is close-on-exec (PEP 446), so are the memfds until
they are duplicated onto 0-2, and the few inheritable ones (found in /proc/self/fd) are
closed in the child.

``spawn_on`` is the same start for commands that talk while they run (a console client on a
pty, a stream): the caller hands the three descriptors it reads and writes itself, and may
make the command a session leader; nothing is captured.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Mapping, Sequence

from corral.host import libcspawn

_RESET_SIGNALS = tuple(
    s for s in (getattr(signal, "SIGPIPE", None), getattr(signal, "SIGXFSZ", None))
    if s is not None
)


USE_LIBC = True
"""``posix_spawnp`` through ctypes (``host/libcspawn.py``: the GIL released while the child
execs) where libc has it; False: ``os.posix_spawnp`` (the tests run both)."""


class TimedOut(Exception):
    """The command did not end within the time given to ``wait``."""


class Spawned:
    """A command started by ``spawn``: its pid, its end (``poll``/``wait``), its output."""

    def __init__(self, argv: Sequence[str], pid: int, stdout: int, stderr: int) -> None:
        self.args = list(argv)
        self.pid = pid
        self.returncode: int | None = None
        self._out = stdout
        self._err = stderr
        self._pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):  # Linux < 5.3: wait() polls
            self._pidfd = os.pidfd_open(pid)

    def poll(self) -> int | None:
        """The exit code if the command has ended (a signal: its negative number)."""
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end (TimedOut after ``timeout`` seconds, the command still running)."""
        if self.returncode is not None:
            return self.returncode
        if timeout is not None:
            self._await_end(timeout)
        _, status = os.waitpid(self.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def _await_end(self, timeout: float) -> None:
        if self._pidfd is not None:
            poller = select.poll()
            poller.register(self._pidfd, select.POLLIN)
            if not poller.poll(max(0, int(timeout * 1000))):
                raise TimedOut(f"{self.args[0]} still runs after {timeout} s")
            return
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() >= deadline:
                raise TimedOut(f"{self.args[0]} still runs after {timeout} s")
            time.sleep(0.001)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def send_signal(self, signum: int) -> None:
        """Signal the command if it has not been reaped yet."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def output(self) -> tuple[bytes, bytes]:
        """What the command wrote to stdout and stderr so far."""
        return _read_all(self._out), _read_all(self._err)

    def close(self) -> None:
        """Release the output files and the pidfd (after ``wait``)."""
        for fd in (self._out, self._err, self._pidfd):
            if fd is not None and fd >= 0:
                os.close(fd)
        self._out = self._err = -1
        self._pidfd = None


def spawn(argv: Sequence[str], *, input: bytes | None = None,
          env: Mapping[str, str] | None = None, fds: Sequence[int] = ()) -> Spawned:
    """Start ``argv`` (searched on PATH); FileNotFoundError if it does not exist. ``fds``:
    descriptors the command gets as 3, 4, … (e.g. a pty for CRIU's ``--inherit-fd``)."""
    if not argv:
        raise ValueError("no command to run")
    out = os.memfd_create("corral-stdout")
    err = os.memfd_create("corral-stderr")
    try:
        stdin = _stdin(input)
        try:
            pid = _posix_spawn(argv, env, stdin, out, err, setsid=False, fds=fds)
        finally:
            os.close(stdin)
    except BaseException:
        os.close(out)
        os.close(err)
        raise
    return Spawned(argv, pid, out, err)


def spawn_on(argv: Sequence[str], stdin: int, stdout: int, stderr: int, *,
             env: Mapping[str, str] | None = None, setsid: bool = False) -> Spawned:
    """Start ``argv`` with its stdin, stdout and stderr on the caller's descriptors (they
    stay the caller's to close); ``setsid``: in a new session, as a console client on a pty
    wants. Its output is the caller's to read (``Spawned.output`` is empty)."""
    if not argv:
        raise ValueError("no command to run")
    return Spawned(argv, _posix_spawn(argv, env, stdin, stdout, stderr, setsid=setsid), -1, -1)


def _posix_spawn(argv: Sequence[str], env: Mapping[str, str] | None, stdin: int, stdout: int,
                 stderr: int, *, setsid: bool, fds: Sequence[int] = ()) -> int:
    # The passed descriptors are duplicated to 3, 4, … last, after the inherited ones are
    # closed (dup2 clears close-on-exec on the copy only).
    dup2 = [(stdin, 0), (stdout, 1), (stderr, 2)]
    dup2_last = [(fd, 3 + n) for n, fd in enumerate(fds)]
    if USE_LIBC and libcspawn.available():  # the GIL released while the child execs
        if libcspawn.closes_from():
            # Everything above the passed descriptors closed by the kernel (close_range):
            # listing /proc/self/fd cost a syscall per descriptor, and corrald holds one
            # (a pidfd) per running container -- ~0.6 ms per start at 100-600 CTs.
            return libcspawn.posix_spawnp(argv[0], argv, env, dup2=dup2, close=(),
                                          dup2_last=dup2_last, setsigdef=_RESET_SIGNALS,
                                          setsid=setsid, closefrom=3 + len(fds))
        return libcspawn.posix_spawnp(argv[0], argv, env, dup2=dup2, close=_inheritable(),
                                      dup2_last=dup2_last, setsigdef=_RESET_SIGNALS,
                                      setsid=setsid)
    close = _inheritable()
    return os.posix_spawnp(
        argv[0], list(argv), os.environ if env is None else env,
        file_actions=[*((os.POSIX_SPAWN_DUP2, fd, to) for fd, to in dup2),
                      *((os.POSIX_SPAWN_CLOSE, fd) for fd in close),
                      *((os.POSIX_SPAWN_DUP2, fd, to) for fd, to in dup2_last)],
        setsigdef=_RESET_SIGNALS, setsigmask=(), setsid=setsid,
    )


def _inheritable() -> list[int]:
    """This process's descriptors above 2 that an exec would pass on: none that Python
    opened, but those the daemon itself inherited (from a shell, a test runner) stay open
    in it, and ``os.dup2`` makes inheritable ones (``subprocess``'s ``close_fds``)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):  # the listing's own, already closed
                if os.get_inheritable(fd):
                    found.append(fd)
    return found


def _stdin(data: bytes | None) -> int:
    if data is None:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    fd = os.memfd_create("corral-stdin")
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_all(fd: int) -> bytes:
    if fd < 0:
        return b""
    size = os.fstat(fd).st_size
    chunks = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)
