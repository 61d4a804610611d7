"""Being told by the kernel that a runtime changed, instead of asking each one: inotify
(cgroup directories made or removed, freezer files written) and pidfds (a process ended).

Neither needs a thread or a timer: the kernel queues what happened and whoever wants to know
drains it when it asks (``Inotify.drain``, ``PidWatch.ended``) -- one ``read`` and one
``poll`` for every watched guest together, and nothing runs while nothing happens.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import struct

IN_MODIFY = 0x2
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_DELETE_SELF = 0x400
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
_EVENT = struct.Struct("iIII")


class Inotify:
    """One inotify instance; ``drain`` says what happened since the last call."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)  # (find_library would run ldconfig)
        fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        self.fd: int = fd

    def add(self, path: str, mask: int) -> int | None:
        """A watch on ``path`` (its watch descriptor); None when ``path`` does not exist."""
        wd = int(self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask))
        if wd < 0:
            code = ctypes.get_errno()
            if code in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise OSError(code, f"inotify_add_watch {path}: {os.strerror(code)}")
        return wd

    def remove(self, wd: int) -> None:
        self._libc.inotify_rm_watch(self.fd, wd)  # gone already (IN_IGNORED): nothing to do

    def drain(self) -> tuple[list[tuple[int, int, str]], bool]:
        """Every queued event as (watch descriptor, mask, name), and whether the queue
        overflowed (events were lost: whoever caches must forget everything)."""
        events: list[tuple[int, int, str]] = []
        overflow = False
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return events, overflow
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                start = offset + _EVENT.size
                name = data[start:start + length].rstrip(b"\0").decode(errors="replace")
                offset = start + length
                if mask & IN_Q_OVERFLOW:
                    overflow = True
                else:
                    events.append((wd, mask, name))

    def close(self) -> None:
        os.close(self.fd)


class PidWatch:
    """Processes watched through pidfds; ``ended`` says which have exited."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self._fds: dict[int, int] = {}  # pidfd -> pid

    def add(self, pid: int) -> int | None:
        """A pidfd for ``pid`` (None when it has already gone)."""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        self._poll.register(fd, select.POLLIN)
        self._fds[fd] = pid
        return fd

    def remove(self, fd: int) -> None:
        if self._fds.pop(fd, None) is not None:
            self._poll.unregister(fd)
            os.close(fd)

    def ended(self) -> list[int]:
        """The pidfds whose process has exited (still watched until ``remove``)."""
        return [fd for fd, _ in self._poll.poll(0)] if self._fds else []

    def close(self) -> None:
        for fd in list(self._fds):
            self.remove(fd)
