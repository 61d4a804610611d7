"""Containers' states kept between two ``list`` calls, and forgotten the moment the kernel
says a container changed -- whoever changed it (Corral, ``lxc-*`` by hand, the guest).

``StateReader`` costs a few file reads per container (~0.1 ms); a thousand on every ``list``
is most of its time. What can change a container's state, and what says so:

* it stops (``lxc-stop``, its init killed, the guest powering off): its init exits -- a
  pidfd per running container, all polled at once;
* it is frozen or thawed: its freezer file is written -- an inotify watch on its freezer
  group (v1 ``freezer.state``; v2 ``cgroup.freeze``/``cgroup.events``);
* it starts (also by hand): LXC makes its cgroup -- one inotify watch on the directory that
  holds every container's group;
* it is deleted (``lxc-destroy``, by Corral or by hand): its directory goes -- one inotify
  watch on the LXC path.

A state is kept only while such a watch covers it (a stopped container whose group exists,
a missing one, or one whose watch could not be set is read every time). Events are drained
at the start of each ``statuses`` call: nothing runs in between, no thread, no timer.
Addresses inside a running container's network namespace have no such signal: they are
read again when older than ``ADDRESS_AGE`` seconds, at most ``ADDRESS_REFRESH`` per call.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from corral.drivers.base import RuntimeState, RuntimeStatus
from corral.drivers.lxc.config import cgroup_dirs
from corral.drivers.lxc.state import StateReader
from corral.host import procfs
from corral.host.watch import (
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_MODIFY,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    Inotify,
    PidWatch,
)
from corral.network.nicfile import NICS_FILE

log = logging.getLogger("corral.lxc")

ADDRESS_AGE = 5.0
ADDRESS_REFRESH = 100


@dataclass
class _Entry:
    status: RuntimeStatus
    instance_dir: str
    pidfd: int | None = None
    wd: int | None = None
    addresses_at: float = 0.0


@dataclass(frozen=True)
class Asked:
    """One container to say the state of."""

    id: int
    container_dir: str
    lxc_name: str
    instance_dir: str


class StateCache:
    """``StateReader.status`` of many containers, kept while the kernel says nothing."""

    def __init__(self, reader: StateReader) -> None:
        self.reader = reader
        self._lock = threading.Lock()
        self._ino: Inotify | None = None
        self._pids = PidWatch()
        self._entries: dict[str, _Entry] = {}
        self._by_wd: dict[int, str] = {}
        self._by_pidfd: dict[int, str] = {}
        self._named: dict[str, int] = {}
        """Directories whose entries are containers (their cgroups' parent, the LXC path),
        watched: an event there names the container it concerns."""
        try:
            self._ino = Inotify()
        except OSError as exc:  # then every call reads every container, as before
            log.warning("no inotify (%s): container states are read on every list", exc)

    # Reading ---------------------------------------------------------------------------
    def statuses(self, asked: Sequence[Asked]) -> dict[int, RuntimeStatus]:
        found: dict[int, RuntimeStatus] = {}
        with self._lock:
            self._drain()
            now = time.monotonic()
            stale: list[tuple[float, str]] = []
            for item in asked:
                entry = self._entries.get(item.lxc_name)
                if entry is None:
                    try:
                        status, entry = self._read(item)
                    except (OSError, ValueError):
                        continue
                    if entry is None:
                        found[item.id] = status
                        continue
                    entry.addresses_at = now
                elif entry.pidfd is not None and now - entry.addresses_at > ADDRESS_AGE:
                    stale.append((entry.addresses_at, item.lxc_name))
                found[item.id] = entry.status
            stale.sort()
            for _, name in stale[:ADDRESS_REFRESH]:
                entry = self._entries[name]
                entry.status = replace(entry.status, addresses=self._addresses(entry))
                entry.addresses_at = now
            by_name = {item.lxc_name: item.id for item in asked}
            for _, name in stale[:ADDRESS_REFRESH]:
                found[by_name[name]] = self._entries[name].status
        return found

    def _read(self, item: Asked) -> tuple[RuntimeStatus, _Entry | None]:
        """The state read from files, and the entry that keeps it (None: not kept)."""
        reader, name = self.reader, item.lxc_name
        status = reader.status(Path(item.container_dir), name, Path(item.instance_dir))
        if self._ino is None:
            return status, None
        rel = cgroup_dirs(name)["container"]
        if not self._watch_named(os.path.dirname(item.container_dir)):
            return status, None
        if status.state is RuntimeState.STOPPED:
            if reader.members_root is None or not self._watch_named(
                    f"{reader.members_root}/{os.path.dirname(rel)}"):
                return status, None
            if os.path.isdir(f"{reader.members_root}/{rel}"):  # made, not yet run or cleaned
                return status, None
            entry = _Entry(status, item.instance_dir)
            self._entries[name] = entry
            return status, entry
        if status.state not in (RuntimeState.RUNNING, RuntimeState.SUSPENDED) or not status.pid:
            return status, None
        freezer = reader.freezer_root if reader.freezer_root is not None else reader.v2_root
        wd = None
        if freezer is not None:
            wd = self._ino.add(f"{freezer}/{rel}", IN_MODIFY | IN_DELETE_SELF)
            if wd is None:
                return status, None
        pidfd = self._pids.add(status.pid)
        if pidfd is None:
            if wd is not None and wd not in self._by_wd:
                self._ino.remove(wd)
            return status, None
        entry = _Entry(status, item.instance_dir, pidfd, wd)
        self._entries[name] = entry
        self._by_pidfd[pidfd] = name
        if wd is not None:
            self._by_wd[wd] = name
        # written between the read and the watch: read the freezer once more
        if reader.frozen(rel) != (status.state is RuntimeState.SUSPENDED):
            self._forget(name)
            return reader.status(Path(item.container_dir), name, Path(item.instance_dir)), None
        return status, entry

    def _addresses(self, entry: _Entry) -> tuple[str, ...]:
        pid = entry.status.pid
        if pid is None or not os.path.exists(f"{entry.instance_dir}/{NICS_FILE}"):
            return ()
        return tuple(procfs.netns_addresses(pid))

    def _watch_named(self, directory: str) -> bool:
        """``directory`` (one whose entries are named after containers) watched; False when
        it is not there (yet)."""
        if directory not in self._named and self._ino is not None:
            wd = self._ino.add(directory, IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO
                               | IN_DELETE_SELF)
            if wd is None:
                return False
            self._named[directory] = wd
        return directory in self._named

    # Forgetting ------------------------------------------------------------------------
    def _drain(self) -> None:
        if self._ino is None:
            return
        events, overflow = self._ino.drain()
        if overflow:
            self._forget_all()
        named = set(self._named.values())
        for wd, mask, name in events:
            if wd in named:
                if mask & IN_IGNORED:  # the directory itself went: forget everything
                    self._named = {d: w for d, w in self._named.items() if w != wd}
                    self._forget_all()
                else:
                    self._forget(name)
                continue
            owner = self._by_wd.get(wd)
            if owner is None:
                continue
            if mask & IN_IGNORED:  # the kernel removed the watch (its group was removed)
                del self._by_wd[wd]
                if owner in self._entries:
                    self._entries[owner].wd = None
            self._forget(owner)
        for pidfd in self._pids.ended():
            owner = self._by_pidfd.get(pidfd)
            if owner is not None:
                self._forget(owner)
            else:
                self._pids.remove(pidfd)

    def _forget(self, name: str) -> None:
        entry = self._entries.pop(name, None)
        if entry is None:
            return
        if entry.pidfd is not None:
            self._by_pidfd.pop(entry.pidfd, None)
            self._pids.remove(entry.pidfd)
        if entry.wd is not None and self._by_wd.pop(entry.wd, None) is not None \
                and self._ino is not None:
            self._ino.remove(entry.wd)

    def _forget_all(self) -> None:
        for name in list(self._entries):
            self._forget(name)

    def close(self) -> None:
        with self._lock:
            self._forget_all()
            self._pids.close()
            if self._ino is not None:
                self._ino.close()
                self._ino = None
