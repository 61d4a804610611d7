"""Waiting for one descriptor to be readable with poll(2), not select(2): select takes no
descriptor numbered 1024 or more, and corrald holds one pidfd per running container
(``drivers/lxc/watch.py``), so with a thousand containers its new descriptors are above that
(``daemon.main.raise_fd_limit``)."""

from __future__ import annotations

import select
from typing import Protocol


class HasFileno(Protocol):
    def fileno(self) -> int: ...


def readable(fd: int | HasFileno, timeout: float) -> bool:
    """Whether ``fd`` has data, an end of file or an error to read within ``timeout``
    seconds (0: now) -- what ``select.select([fd], [], [], timeout)`` answered."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(max(0, int(timeout * 1000))))
