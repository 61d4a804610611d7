"""A migration's background watch: one daemon thread, started on demand and stopped with the
service (the targets' lease watchdog, the resolver of unresolved moves)."""

from __future__ import annotations

import threading


class Watcher:
    """``ensure`` starts ``_watch`` on a thread named ``name`` unless it runs already or the
    watcher is closed; ``_watch`` ends when ``_stop`` is set (or when it has nothing left)."""

    name = "migration-watch"

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def ensure(self) -> None:
        with self._guard:
            if self._stop.is_set() or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._watch, daemon=True, name=self.name)
            self._thread.start()

    def _watch(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
