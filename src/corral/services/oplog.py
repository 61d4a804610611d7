"""Each operation's own log: the lines logged while its work ran, kept in the database.

One ``logging.Handler`` on the ``corral`` logger (installed once per process, whatever the
number of daemons a test makes) hands a record made while an operation's work runs
(``scope.current`` names it) to that operation's ``OperationLog``, which adds it to the
operation's lines in memory, together with the phases the work reports; when the operation
ends they are written in one transaction (not one per line on the operation's path), with
other ended operations' lines when a ``WriteBehind`` is given (``services/writebehind.py``).
Bounded: at most ``MAX_LINES`` lines of ``MAX_CHARS`` each per operation, and lines older
than ``KEPT_FOR`` are deleted (checked at most once an hour).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from corral.services.scope import current
from corral.state.oplogstore import LogLine, OperationLogStore

if TYPE_CHECKING:
    from corral.services.writebehind import WriteBehind

MAX_LINES = 1000
MAX_CHARS = 4000
KEPT_FOR = 31 * 24 * 3600.0
PRUNE_EVERY = 3600.0
log = logging.getLogger("corral.operations")

_running: dict[str, OperationLog] = {}
"""Each running operation's log, by operation id (every daemon of the process)."""


class _Router(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        scope = current.get()
        found = None if scope is None else _running.get(scope.operation)
        if found is not None and scope is not None:
            found.record(scope.operation, record)


_ROUTER = _Router(logging.INFO)


class OperationLog:
    def __init__(self, store: OperationLogStore, clock: Callable[[], float] = time.time) -> None:
        corral_log = logging.getLogger("corral")
        if _ROUTER not in corral_log.handlers:
            corral_log.addHandler(_ROUTER)
        self.store = store
        self.clock = clock
        self._buffers: dict[str, list[LogLine]] = {}
        self._skipped: dict[str, int] = {}
        self._guard = threading.Lock()
        self._pruned = 0.0
        self.writer: WriteBehind | None = None
        """Where an ended operation's lines go to be stored with others' (None: at once)."""

    # Collecting -------------------------------------------------------------------------
    def begin(self, op_id: str) -> None:
        with self._guard:
            self._buffers[op_id] = []
        _running[op_id] = self

    def add(self, op_id: str, level: str, logger: str, message: str,
            when: float | None = None) -> None:
        with self._guard:
            lines = self._buffers.get(op_id)
            if lines is None:
                return  # not running in this daemon (ended already)
            if len(lines) >= MAX_LINES:
                self._skipped[op_id] = self._skipped.get(op_id, 0) + 1
                return
            if len(message) > MAX_CHARS:
                message = message[:MAX_CHARS] + f" … ({len(message) - MAX_CHARS} more chars)"
            lines.append(LogLine(len(lines), self.clock() if when is None else when,
                                 level, logger, message))

    def record(self, op_id: str, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        self.add(op_id, record.levelname.lower(), record.name, message, record.created)

    # Ending -----------------------------------------------------------------------------
    def finish(self, op_id: str) -> None:
        """Write the operation's lines; kept in memory until they are in the database."""
        _running.pop(op_id, None)
        with self._guard:
            lines = list(self._buffers.get(op_id, []))
            skipped = self._skipped.pop(op_id, 0)
        if skipped:
            lines.append(LogLine(len(lines), self.clock(), "warning", "corral.operations",
                                 f"{skipped} more lines were not kept (at most {MAX_LINES})"))
        def stored() -> None:
            with self._guard:
                self._buffers.pop(op_id, None)

        try:
            if self.writer is not None:
                self.writer.log_lines(op_id, lines, stored)
            else:
                try:
                    self.store.add(op_id, lines)
                finally:
                    stored()
            now = self.clock()
            if now - self._pruned > PRUNE_EVERY:
                self._pruned = now
                self.store.prune(now - KEPT_FOR)
        except Exception:  # the log of a log: never fail the operation's end
            log.exception("keeping the log lines of operation %s failed", op_id)

    def lines(self, op_id: str) -> list[LogLine]:
        """What is stored, then what a running operation has logged so far."""
        with self._guard:  # first: ``finish`` stores them before it drops them
            pending = list(self._buffers.get(op_id, []))
        stored = self.store.lines(op_id)
        return stored + pending[len(stored):]
