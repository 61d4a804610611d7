"""One way to take back a job that failed half-way: labelled undo steps.

Every step that changed something pushes how to take it back (``undo.push(label, fn)``). On
failure the steps run in reverse order, each logged as ``undo: <label>``; one that fails is
logged and collected, and the others still run (a leak left by one broken step must not
become several). On success they are discarded. Used by create, clone, convert, restore and
both sides of a migration; pure (no I/O of its own), so any layer may use it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType

from corral.domain.errors import CorralError

_log = logging.getLogger("corral.undo")


def describe(exc: BaseException) -> str:
    """An error as one line: a Corral error's message, else the type and its text."""
    if isinstance(exc, CorralError):
        return exc.message
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Undo:
    """The undo steps of one job. As a context manager: an exception leaving the block runs
    them (and propagates); leaving it normally discards them."""

    def __init__(self, log: logging.Logger | None = None) -> None:
        self._log = log or _log
        self._steps: list[tuple[str, Callable[[], object]]] = []
        self.errors: list[str] = []
        """``"<label>: <error>"`` of every step that failed in the last ``run``."""

    def push(self, label: str, fn: Callable[[], object]) -> None:
        """``fn`` takes back what was just done; ``label`` says what it does."""
        self._steps.append((label, fn))

    def pop(self) -> None:
        """Forget the newest step: what it would take back was taken back already, or never
        happened (a step pushed before an action that then changed nothing)."""
        self._steps.pop()

    def __len__(self) -> int:
        return len(self._steps)

    def run(self) -> list[str]:
        """Run every step, newest first, and forget them; returns the failures."""
        steps, self._steps = self._steps, []
        self.errors = []
        for label, fn in reversed(steps):
            self._log.info("undo: %s", label)
            try:
                fn()
            except Exception as exc:
                self._log.warning("undo: %s failed: %s", label, describe(exc))
                self.errors.append(f"{label}: {describe(exc)}")
        return self.errors

    def discard(self) -> None:
        """The job succeeded: nothing is taken back."""
        self._steps = []

    def __enter__(self) -> Undo:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.discard()
        else:
            self.run()
