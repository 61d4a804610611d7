"""Rows that may reach the database a moment late, written together by one thread.

A running operation's progress (fraction and phase) and an ended operation's log lines are
not on anyone's critical path: the events carry the progress at once, and ``OperationLog``
answers the lines from memory until they are stored. Written one transaction each, they were
about half of a bulk create's write transactions (five progress rows and the log per item),
each taking its turn for the daemon's one write lock (``Database._writer``). Here they wait
at most ``DELAY`` seconds and are written in one transaction for every operation at once.

The thread sleeps on an event while nothing is pending (no timer, no polling when idle).
A progress row is written only while its operation is still running (the final row, written
at once by ``OperationManager``, is never overwritten by an older progress).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from corral.state.oplogstore import LogLine, OperationLogStore
from corral.state.store import StateStore

DELAY = 0.25
"""Seconds a deferred row may wait (and what a reader of a running operation's row may lag)."""
log = logging.getLogger("corral.operations")


class WriteBehind:
    def __init__(self, store: StateStore, logs: OperationLogStore, delay: float = DELAY) -> None:
        self.store = store
        self.logs = logs
        self.delay = delay
        self._guard = threading.Lock()
        self._progress: dict[str, tuple[float, str]] = {}
        self._lines: list[tuple[str, Sequence[LogLine], Callable[[], None]]] = []
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def progress(self, op_id: str, fraction: float, phase: str) -> None:
        """Record ``op_id``'s progress within ``delay`` (the newest one wins)."""
        with self._guard:
            self._progress[op_id] = (fraction, phase)
            self._started()

    def forget(self, op_id: str) -> None:
        """``op_id`` ended: its final row is written; a pending progress would be stale."""
        with self._guard:
            self._progress.pop(op_id, None)

    def log_lines(self, op_id: str, lines: Sequence[LogLine], stored: Callable[[], None]) -> None:
        """Store ``lines`` of the ended operation ``op_id`` within ``delay``; then (or if
        that fails) ``stored()``."""
        with self._guard:
            if self._closed:
                write_now = True
            else:
                write_now = False
                self._lines.append((op_id, lines, stored))
                self._started()
        if write_now:
            self._write({}, [(op_id, lines, stored)])

    def _started(self) -> None:
        """Under ``_guard``: wake the writer (started on first use)."""
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, name="write-behind", daemon=True)
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if not self._closed:
                time.sleep(self.delay)  # gather what the next moments add
            if not self.flush():
                return

    def flush(self) -> bool:
        """Write everything pending now; False once closed (the thread then ends)."""
        with self._guard:
            progress, self._progress = self._progress, {}
            lines, self._lines = self._lines, []
            self._wake.clear()
            closed = self._closed
        self._write(progress, lines)
        return not closed

    def _write(self, progress: dict[str, tuple[float, str]],
               lines: list[tuple[str, Sequence[LogLine], Callable[[], None]]]) -> None:
        try:
            if progress or lines:
                with self.store.db.transaction():
                    self.store.update_progress(progress)
                    for op_id, kept, _stored in lines:
                        self.logs.add(op_id, kept)
        except Exception:  # never fail an operation over its progress or its log
            log.exception("writing operations' progress and log lines failed")
        finally:
            for _op, _kept, stored in lines:
                stored()

    def close(self) -> None:
        """Write what is pending and stop the thread (the daemon stops)."""
        with self._guard:
            self._closed = True
            thread = self._thread
            self._wake.set()
        if thread is not None:
            thread.join(timeout=5)
        self.flush()
