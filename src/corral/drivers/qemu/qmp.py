"""One long-lived QMP session per running VM, all on one event-loop thread.

QEMU has a single monitor per VM (``run/qmp.sock``) and its socket chardev serves one client
at a time: a second connection is accepted by the kernel but gets no greeting until the first
one hangs up. So every user of QMP in the driver — lifecycle, resources, stats, snapshots,
backups, migration — goes through the same :class:`Monitor` for that socket, kept open
between calls (a connect and the capabilities handshake per command cost more than the
command, and a migration holding its own connection starved everything else).

* **One thread for every VM.** ``qemu.qmp`` is asyncio; one daemon thread runs one event
  loop for all sessions, started at the first QMP call. An idle session is a reader task
  blocked on its socket: nothing wakes while nothing happens, however many VMs run.
* **Lazy, and re-opened.** A session connects at its first command (never on the VM start
  path, which only sends QMP when it must) and again after QEMU hung up or after corrald
  restarted (a new process finds QEMU's monitor free: the old connection died with it).
  The driver closes it when the VM stops.
* **Serialised.** Callers from any thread submit coroutines to the loop; one ``asyncio.Lock``
  per session lets one caller's commands (a ``qmp_many`` batch) run at a time, in order.
* **Events to everyone who waits.** :meth:`Monitor.subscribe` registers its own listener on
  the session: every subscriber sees every event it asked for (a migration waiting for
  ``MIGRATION`` and a backup waiting for ``JOB_STATUS_CHANGE`` do not take each other's), and
  nothing is queued for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from qemu.qmp import EventListener, ExecInterruptedError, QMPClient, Runstate, StateError

from corral.domain.errors import HostFailure, reason

T = TypeVar("T")
Command = tuple[str, dict[str, Any] | None]
_GRACE = 5.0  # seconds a caller waits beyond its commands' timeouts (queued behind others)


class _Hub:
    """The process's one QMP event loop, on a daemon thread started at first use."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._guard:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="qmp", daemon=True).start()
                self._loop = loop
            return self._loop

    def call(self, coro: Coroutine[Any, Any, T], wait: float) -> T:
        """Run ``coro`` on the loop and wait for it; cancelled there if ``wait`` runs out."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop())
        try:
            return future.result(wait)
        except TimeoutError:
            future.cancel()
            raise


class Monitor:
    """The session on one VM's QMP socket. Thread-safe; use :func:`monitor` to get it."""

    def __init__(self, path: Path, hub: _Hub) -> None:
        self.path = path
        self._hub = hub
        self._client = QMPClient("corral")
        self._turn = asyncio.Lock()  # bound to the hub's loop at first use
        self._closed = False

    async def _connected(self, timeout: float) -> None:
        if self._closed:  # a caller that got this session before the VM stopped: never
            # connect it again (to the next QEMU on this path, whose session is a new one)
            raise HostFailure(f"the QMP session on '{self.path}' was closed (the VM stopped)")
        state = self._client.runstate
        if state is Runstate.RUNNING:
            return
        if state is not Runstate.IDLE:  # QEMU hung up (quit, crash): reset, then reconnect
            with contextlib.suppress(Exception):
                await self._client.disconnect()
        await asyncio.wait_for(self._client.connect(str(self.path)), timeout)

    async def _run(self, commands: list[Command], timeout: float) -> list[Any]:
        async with self._turn:
            await self._connected(timeout)
            return [await asyncio.wait_for(self._client.execute(command, arguments), timeout)
                    for command, arguments in commands]

    def run(self, commands: list[Command], timeout: float = 5.0) -> list[Any]:
        """Run ``commands`` in order, no other caller's in between; HostFailure on failure.
        ``timeout`` bounds the connect and each command."""
        try:
            return self._hub.call(self._run(commands, timeout),
                                  timeout * (len(commands) + 1) + _GRACE)
        except (TimeoutError, OSError, EOFError, ExecInterruptedError, StateError) as exc:
            raise HostFailure(f"QMP at '{self.path}' unreachable: "
                              f"{reason(exc)}") from exc
        except Exception as exc:  # qemu.qmp's own hierarchy (ExecuteError, ConnectError…)
            raise HostFailure(f"QMP {commands[0][0]} failed: {exc}") from exc

    def execute(self, command: str, arguments: dict[str, Any] | None = None,
                timeout: float = 5.0) -> Any:
        return self.run([(command, arguments)], timeout)[0]

    def subscribe(self, names: Iterable[str], timeout: float = 5.0) -> Subscription:
        """Start receiving the events named (connecting the session if needed): every event
        QEMU sends from now on, in order, until the subscription is closed."""
        return Subscription(self, tuple(names), timeout)

    async def _listen(self, listener: EventListener, timeout: float) -> None:
        self._client.register_listener(listener)
        try:
            async with self._turn:
                await self._connected(timeout)
        except BaseException:
            self._client.remove_listener(listener)
            raise

    async def _unlisten(self, listener: EventListener) -> None:
        with contextlib.suppress(Exception):
            self._client.remove_listener(listener)

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.disconnect()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            self._hub.call(self._close(), _GRACE)


class Subscription:
    """Events of one session for one waiter (a context manager; ``close`` when done)."""

    def __init__(self, monitor: Monitor, names: tuple[str, ...], timeout: float) -> None:
        self._monitor = monitor
        self._listener = EventListener(names=names or None)
        try:
            monitor._hub.call(monitor._listen(self._listener, timeout), timeout + _GRACE)
        except (TimeoutError, OSError, EOFError) as exc:
            raise HostFailure(f"QMP at '{monitor.path}' unreachable: "
                              f"{reason(exc)}") from exc
        except Exception as exc:
            raise HostFailure(f"QMP at '{monitor.path}': {exc}") from exc

    def get(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None after ``timeout`` seconds without one."""
        async def next_event() -> Any:
            try:
                return await asyncio.wait_for(self._listener.get(), timeout)
            except TimeoutError:
                return None

        found = self._monitor._hub.call(next_event(), timeout + _GRACE)
        return dict(found) if found is not None else None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._monitor._hub.call(self._monitor._unlisten(self._listener), _GRACE)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


class Monitors:
    """The open sessions of this process, by QMP socket path."""

    def __init__(self) -> None:
        self._hub = _Hub()
        self._guard = threading.Lock()
        self._open: dict[str, Monitor] = {}

    def get(self, path: Path) -> Monitor:
        with self._guard:
            found = self._open.get(str(path))
            if found is None:
                found = self._open[str(path)] = Monitor(path, self._hub)
            return found

    def close(self, path: Path) -> None:
        """Hang up (the VM stopped or is going away); the next call connects again."""
        with self._guard:
            found = self._open.pop(str(path), None)
        if found is not None:
            found.close()

    def paths(self) -> list[str]:
        with self._guard:
            return list(self._open)


MONITORS = Monitors()

STATE_EVENTS = ("STOP", "RESUME", "SHUTDOWN", "RESET", "POWERDOWN", "SUSPEND", "WAKEUP",
                "GUEST_PANICKED", "VSERPORT_CHANGE")
"""What QEMU says when a VM's run state or its guest agent port changes."""


class StateWatches:
    """Per VM, whether QEMU sent a state event (``STATE_EVENTS``) since the last look: a
    listener on its session, looked at for every VM in one call on the loop. Lets ``list``
    keep a VM's last queried state instead of a QMP round trip per VM each time."""

    def __init__(self) -> None:
        self._listeners: dict[str, tuple[Monitor, EventListener]] = {}

    def changed(self, paths: Sequence[Path]) -> list[bool]:
        """For each path: True when it has no listener (on its current session) or events
        came since the last look (they are dropped: the caller queries again)."""
        current = [MONITORS.get(path) for path in paths]

        async def look() -> list[bool]:
            found = []
            for path, session in zip(paths, current, strict=True):
                held = self._listeners.get(str(path))
                if held is None or held[0] is not session:
                    found.append(True)
                elif not held[1].empty():
                    held[1].clear()
                    found.append(True)
                else:
                    found.append(False)
            return found

        return MONITORS._hub.call(look(), _GRACE) if paths else []

    def watch(self, paths: Sequence[Path], timeout: float = 1.0) -> None:
        """Listen for state events on these VMs' sessions (before their state is queried,
        so a change during the query is not missed)."""
        for path in paths:
            session = MONITORS.get(path)
            held = self._listeners.get(str(path))
            if held is not None and held[0] is session:
                continue
            self.forget(path)
            listener = EventListener(names=STATE_EVENTS)
            self._listeners[str(path)] = (session, listener)
            session._client.register_listener(listener)

    def forget(self, path: Path) -> None:
        held = self._listeners.pop(str(path), None)
        if held is not None:
            with contextlib.suppress(Exception):
                held[0]._client.remove_listener(held[1])


def monitor(path: Path) -> Monitor:
    """The session on the QMP socket at ``path`` (made on first use, connected lazily)."""
    return MONITORS.get(path)


def close_monitor(path: Path) -> None:
    MONITORS.close(path)


def qmp(
    path: Path, command: str, arguments: dict[str, Any] | None = None, timeout: float = 5.0
) -> Any:
    """Run one QMP command on the monitor socket at ``path``; HostFailure on any failure."""
    return monitor(path).execute(command, arguments, timeout)


def qmp_many(path: Path, commands: list[Command], timeout: float = 5.0) -> list[Any]:
    """Several commands in a row, with no other caller's command in between."""
    return monitor(path).run(commands, timeout)


def qmp_each(paths: Sequence[Path], commands: list[Command], timeout: float = 1.0
             ) -> list[list[Any] | HostFailure]:
    """``qmp_many`` of the same commands on many VMs at once: every session's round trip
    runs together on the loop (``list`` of fifty VMs waits for the slowest, not for the
    sum); a VM that fails or does not answer within ``timeout`` gives its HostFailure."""
    monitors = [monitor(path) for path in paths]

    async def one(m: Monitor) -> list[Any]:
        return await asyncio.wait_for(m._run(commands, timeout), timeout * (len(commands) + 1))

    async def every() -> list[list[Any] | BaseException]:
        return await asyncio.gather(*(one(m) for m in monitors), return_exceptions=True)

    if not monitors:
        return []
    answers = MONITORS._hub.call(every(), timeout * (len(commands) + 1) + _GRACE)
    found: list[list[Any] | HostFailure] = []
    for path, answer in zip(paths, answers, strict=True):
        if isinstance(answer, BaseException):
            found.append(HostFailure(f"QMP at '{path}' failed: "
                                     f"{answer or type(answer).__name__}"))
        else:
            found.append(answer)
    return found
