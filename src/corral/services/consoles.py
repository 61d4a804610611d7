"""Shared consoles: one runtime console per instance, N viewers.

A container's console is one pty (``lxc-console`` on the container's tty) and a VM's is
QEMU's serial socket, which takes one client at a time: two viewers opening their own
streams would take the console from each other. ``ConsoleHub`` opens the runtime console
once per instance, reads it on one thread, and hands every byte to each attached viewer;
what any viewer types goes to the one stream. It keeps the last ``BACKLOG`` bytes, which a
viewer that attaches later (a reloaded page) is shown first, and keeps the stream open for
``linger`` seconds after the last viewer left, so a reload finds the same console.

A viewer may resize the console (``resize``): a container's console pty takes the window
size (the last viewer to resize wins, as in tmux's "latest"); a VM's serial line has no
size to set, and ``resize`` says so by returning False.

Viewers get bytes through a callback (``deliver``), called on the hub's reader thread;
``b""`` means the console closed (the instance stopped).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from corral.drivers.base import ConsoleStream, ResizableConsole
from corral.host.fdwait import readable

log = logging.getLogger("corral.consoles")

BACKLOG = 64 * 1024
LINGER = 60.0
POLL = 0.25

Deliver = Callable[[bytes], None]


class Viewer:
    """One viewer attached to a shared console."""

    def __init__(self, shared: SharedConsole, deliver: Deliver) -> None:
        self._shared = shared
        self.deliver = deliver

    def write(self, data: bytes) -> None:
        self._shared.write(data)

    def resize(self, cols: int, rows: int) -> bool:
        return self._shared.resize(cols, rows)

    def close(self) -> None:
        self._shared.detach(self)


class SharedConsole:
    def __init__(self, key: int, stream: ConsoleStream, linger: float,
                 on_end: Callable[[SharedConsole], None]) -> None:
        self.key = key
        self._stream = stream
        self._linger = linger
        self._on_end = on_end
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._viewers: list[Viewer] = []
        self._backlog = bytearray()
        self._idle_since: float | None = time.monotonic()
        self._ended = False
        self._stop = False
        self._thread = threading.Thread(target=self._pump, name=f"console-{key}", daemon=True)
        self._thread.start()

    @property
    def ended(self) -> bool:
        return self._ended

    def attach(self, deliver: Deliver, replay: bool) -> Viewer | None:
        """A new viewer, after ``deliver`` got the backlog (if ``replay``); None when the
        console already ended (the caller opens a new one)."""
        viewer = Viewer(self, deliver)
        with self._lock:
            if self._ended:
                return None
            if replay and self._backlog:
                deliver(bytes(self._backlog))
            self._viewers.append(viewer)
            self._idle_since = None
        return viewer

    def detach(self, viewer: Viewer) -> None:
        with self._lock:
            if viewer in self._viewers:
                self._viewers.remove(viewer)
            if not self._viewers:
                self._idle_since = time.monotonic()

    @property
    def viewers(self) -> int:
        with self._lock:
            return len(self._viewers)

    def write(self, data: bytes) -> None:
        if self._ended:
            return
        with self._write_lock:
            try:
                self._stream.write(data)
            except OSError as exc:
                log.info("console %s: a write failed: %s", self.key, exc)

    def resize(self, cols: int, rows: int) -> bool:
        """Give the guest's terminal this window size; False: this console has none."""
        if self._ended or not isinstance(self._stream, ResizableConsole):
            return False
        with self._write_lock:
            try:
                self._stream.resize(cols, rows)
            except OSError as exc:
                log.info("console %s: a resize failed: %s", self.key, exc)
                return False
        return True

    def stop(self) -> None:
        """End the console now (the reader thread closes the stream)."""
        self._stop = True
        self._thread.join(timeout=5)

    def _pump(self) -> None:
        fd = self._stream.fileno()
        try:
            while not self._stop:
                with self._lock:
                    idle = self._idle_since
                if idle is not None and time.monotonic() - idle > self._linger:
                    break
                if not readable(fd, POLL):
                    continue
                try:
                    data = self._stream.read(65536)
                except OSError:
                    data = b""
                if not data:
                    break
                with self._lock:
                    self._backlog += data
                    del self._backlog[:-BACKLOG]
                    viewers = list(self._viewers)
                for viewer in viewers:
                    _tell(viewer, data)
        except (OSError, ValueError) as exc:  # the descriptor went away under poll
            log.info("console %s ended: %s", self.key, exc)
        finally:
            with self._lock:
                self._ended = True
                viewers = list(self._viewers)
                self._viewers.clear()
            self._on_end(self)
            try:
                self._stream.close()
            except OSError as exc:
                log.info("console %s: closing failed: %s", self.key, exc)
            for viewer in viewers:
                _tell(viewer, b"")


def _tell(viewer: Viewer, data: bytes) -> None:
    try:
        viewer.deliver(data)
    except Exception:  # a viewer's failure is its own: the others still get the bytes
        log.exception("a console viewer failed")


class ConsoleHub:
    """The shared consoles of this daemon, by instance id."""

    def __init__(self, linger: float = LINGER) -> None:
        self.linger = linger
        self._lock = threading.Lock()
        self._open: dict[int, SharedConsole] = {}

    def attach(self, key: int, open_stream: Callable[[], ConsoleStream], deliver: Deliver,
               replay: bool = True) -> Viewer:
        """Attach ``deliver`` to instance ``key``'s console, opening it with ``open_stream``
        if nobody has it open (its errors -- not running, cannot attach -- propagate)."""
        with self._lock:
            shared = self._open.get(key)
            if shared is not None:
                viewer = shared.attach(deliver, replay)
                if viewer is not None:
                    return viewer
                self._open.pop(key, None)
            shared = SharedConsole(key, open_stream(), self.linger, self._ended)
            self._open[key] = shared
            viewer = shared.attach(deliver, replay)
        if viewer is None:  # ended at once (the console closed before anyone attached)
            deliver(b"")
            return Viewer(shared, deliver)
        return viewer

    def viewers(self, key: int) -> int:
        with self._lock:
            shared = self._open.get(key)
        return 0 if shared is None else shared.viewers

    def _ended(self, shared: SharedConsole) -> None:
        with self._lock:
            if self._open.get(shared.key) is shared:
                del self._open[shared.key]

    def close(self) -> None:
        with self._lock:
            found = list(self._open.values())
        for shared in found:
            shared.stop()
