"""Long work as Operations: an id at once, progress, cancel, events, a final status."""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar

from corral.domain.errors import CorralError, NotFound
from corral.domain.lifecycle import State
from corral.domain.statuses import OperationStatus
from corral.services.events import EventBus
from corral.services.faults import fault_point
from corral.services.locks import InstanceLocks
from corral.services.oplog import OperationLog
from corral.services.opmetrics import OperationMetrics
from corral.services.scope import Scope, current
from corral.services.writebehind import WriteBehind
from corral.state.oplogstore import OperationLogStore
from corral.state.store import OperationRecord, StateStore

FINISHED_KEPT = 256  # recently ended operations answered to waiters from memory
log = logging.getLogger("corral.operations")

requester: ContextVar[str | None] = ContextVar("corral_requester", default=None)
"""The user a request runs for (set by the API's authentication for each request; None for
the built-in admin identities). Operations submitted while handling it record that user, so
an owner can follow the operations it started (and only those)."""


_run_here: ContextVar[list[Callable[[], None]] | None] = ContextVar("corral_run_here",
                                                                default=None)
"""Set by ``execute``: operations submitted meanwhile run on the submitting thread."""

_item_of: ContextVar[tuple[str, str] | None] = ContextVar("corral_item_of", default=None)
"""Set by ``run_item``: (parent operation, child id) the next submitted operation records
itself as -- an item of a bulk operation, under the id its pending row already has."""


class Cancelled(CorralError):
    code = "cancelled"
    status = 409


class OperationContext:
    """Handed to the work function: report progress, check for cancellation."""

    def __init__(self, manager: OperationManager, op_id: str, instance: str | None,
                 user: str | None = None, parent: str | None = None) -> None:
        self._manager = manager
        self.id = op_id
        self.instance = instance
        self.user = user
        self.phase: str | None = None
        self.parent = parent
        self.holds_lock = instance is not None
        self.cancel_requested = threading.Event()
        self.settled: tuple[int, State] | None = None
        self.result: str | None = None
        """What a successful operation says at its end (its last phase; "done" if None)."""

    def settle(self, instance_id: int, state: State) -> None:
        """The instance's state once the work succeeds: committed in the same transaction
        as the operation's success (one commit, not two, at the end of a start)."""
        self.settled = (instance_id, state)

    def progress(self, fraction: float, phase: str) -> None:
        if self.cancel_requested.is_set():
            raise Cancelled(f"operation {self.id} was cancelled")
        fraction = max(0.0, min(1.0, fraction))
        # the row follows within WriteBehind.DELAY, with other operations' rows
        self._manager.writer.progress(self.id, fraction, phase)
        if phase != self.phase:  # the operation's log: each phase once, not every fraction
            self.phase = phase
            self._manager.oplog.add(self.id, "info", "corral.operations", phase)
        self._manager.events.publish(
            "operation.progress", instance=self.instance, operation=self.id,
            progress=fraction, phase=phase,
        )


Work = Callable[[OperationContext], None]
Ended = Callable[[OperationRecord], object]
Reported = Callable[[OperationRecord | BaseException], object]


class Submission:
    """What ``OperationManager.execute`` submitted: ``record`` once it is recorded."""

    def __init__(self) -> None:
        self.record: OperationRecord | None = None


class OperationManager:
    def __init__(self, store: StateStore, events: EventBus, locks: InstanceLocks) -> None:
        self.store = store
        self.events = events
        self.locks = locks
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="op")
        self._done: dict[str, threading.Event] = {}
        self._contexts: dict[str, OperationContext] = {}
        self._guard = threading.Lock()
        self._finished: OrderedDict[str, OperationRecord] = OrderedDict()
        self._on_end: dict[str, list[Ended]] = {}
        self.oplog = OperationLog(OperationLogStore(store.db))
        self.writer = WriteBehind(store, self.oplog.store)
        """Progress rows and ended operations' log lines, written together a moment late."""
        self.oplog.writer = self.writer
        self.metrics = OperationMetrics()
        """Ended operations by action and status, and how long they ran (/metrics)."""

    def submit(
        self, action: str, instance: str | None, work: Work,
        during: tuple[int, State] | None = None, lock: bool = True,
    ) -> OperationRecord:
        """Lock ``instance`` (Busy if held), record the operation and run ``work`` in a thread.
        ``during``: (instance id, state) the instance is in while ``work`` runs, committed
        with the operation's record; ``lock=False``: the operation names ``instance`` but
        does not hold its lock (a command run inside it)."""
        item = _item_of.get()
        parent, op_id = item if item is not None else (None, str(uuid.uuid4()))
        if item is not None:
            _item_of.set(None)  # the item is this operation, not any it submits in turn
        user = requester.get()
        locked = instance if lock else None
        if locked is not None:
            self.locks.acquire(locked, op_id, action)
        try:
            record = self.store.insert_operation(op_id, action, instance, instance_state=during,
                                                 requested_by=user, parent=parent)
        except BaseException:
            if locked is not None:
                self.locks.release(locked, op_id)
            raise
        ctx = OperationContext(self, op_id, instance, user, parent)
        ctx.holds_lock = locked is not None
        self.oplog.begin(op_id)
        with self._guard:
            self._done[op_id] = threading.Event()
            self._contexts[op_id] = ctx
        self.events.publish("operation.created", instance=instance, operation=op_id, action=action)
        if during is not None:
            self.events.publish("instance.state", instance=instance, state=during[1].value)
        runner = functools.partial(self._run, ctx, action, work)
        here = _run_here.get()
        if here is not None:
            here.append(runner)
        else:
            self._pool.submit(runner)
        return record

    def execute(self, submit: Callable[[], OperationRecord], report: Reported, *,
                at_end: bool = False) -> Submission:
        """``submit()`` on a thread of the operation pool (in the caller's context), then run
        the operation's work on that same thread. For the API's lifecycle actions: one
        thread hand-off on a start's path instead of two (request thread, then operation
        thread), each ~0.4 ms here.

        ``report`` gets the error of a refused ``submit``, else the record -- at once, or
        with ``at_end`` only the final one when the operation has ended: then the caller is
        woken once per action, not also while the guest starts (a wake-up competes with it
        for the CPU). The returned ``Submission`` shows the record as soon as it exists.
        Only for ``submit`` functions that do not wait for what they submit (they would
        wait for themselves)."""
        submission = Submission()
        self._pool.submit(contextvars.copy_context().run, self._submit_and_run, submit,
                          report, at_end, submission)
        return submission

    def run_item(self, parent: str, child: str,
                 submit: Callable[[], OperationRecord]) -> OperationRecord:
        """Run one item of bulk operation ``parent`` on this thread: the operation
        ``submit()`` submits is recorded as ``child`` (its pending row) and its work runs
        here; its final record. A refused ``submit`` raises (the child stays pending: the
        caller records why)."""
        runners: list[Callable[[], None]] = []
        here, item = _run_here.set(runners), _item_of.set((parent, child))
        try:
            record = submit()
        finally:
            _item_of.reset(item)
            _run_here.reset(here)
        for run in runners:
            run()
        return self.wait(record.id, None)

    def _submit_and_run(self, submit: Callable[[], OperationRecord], report: Reported,
                        at_end: bool, submission: Submission) -> None:
        runners: list[Callable[[], None]] = []
        token = _run_here.set(runners)
        try:
            record = submit()
        except BaseException as exc:
            report(exc)
            return
        finally:
            _run_here.reset(token)
        submission.record = record
        if at_end:
            self.on_end(record.id, report)  # before its work runs (here, next)
        else:
            report(record)
        for run in runners:
            run()

    def _run(self, ctx: OperationContext, action: str, work: Work) -> None:
        scope = current.set(Scope(ctx.id, action, ctx.instance, ctx.user))
        try:
            self._run_in_scope(ctx, action, work)
        finally:
            current.reset(scope)
            self.oplog.finish(ctx.id)

    def _run_in_scope(self, ctx: OperationContext, action: str, work: Work) -> None:
        subject = f"{action} {ctx.instance}" if ctx.instance else action
        log.info("%s: started", subject)
        status, error = OperationStatus.SUCCESS, None
        began = time.monotonic()
        try:
            try:
                fault_point(f"{action}.begin")
                work(ctx)
                fault_point(f"{action}.end")
            except Cancelled as exc:
                status, error = OperationStatus.CANCELLED, exc.message
            except CorralError as exc:
                status, error = OperationStatus.FAILURE, exc.message
            except Exception as exc:  # a bug or an unexpected host error: keep the daemon alive
                log.exception("operation %s (%s) crashed", ctx.id, action)
                status, error = OperationStatus.FAILURE, f"internal error: {exc}"
            self.metrics.record(action, status, time.monotonic() - began)
            succeeded = status is OperationStatus.SUCCESS
            progress = 1.0 if succeeded else None
            settled = ctx.settled if succeeded else None
            final = self.store.update_operation(
                ctx.id, status=status, error=error, progress=progress,
                phase=(ctx.result or "done") if succeeded else status.value,
                instance_state=settled,
            )
            self.writer.forget(ctx.id)
        finally:
            # released only once the instance's new state is committed: the next operation
            # on it must not read the state this one leaves behind before it is written
            if ctx.instance is not None and ctx.holds_lock:
                self.locks.release(ctx.instance, ctx.id)
        with self._guard:
            done = self._done.pop(ctx.id, None)
            self._contexts.pop(ctx.id, None)
            callbacks = self._on_end.pop(ctx.id, [])
            self._finished[ctx.id] = final
            while len(self._finished) > FINISHED_KEPT:
                self._finished.popitem(last=False)
        for callback in callbacks:  # waiters first: their answer does not wait for events
            try:
                callback(final)
            except Exception:  # e.g. the API's event loop closed while the daemon stops
                log.exception("a waiter of operation %s failed", ctx.id)
        if done is not None:
            done.set()
        if status is OperationStatus.SUCCESS:
            log.info("%s: succeeded", subject)
        else:
            log.warning("%s: %s: %s", subject, status.value, error)
        if settled is not None:
            self.events.publish("instance.state", instance=ctx.instance, state=settled[1].value)
        self.events.publish(
            "operation." + status.value, instance=ctx.instance, operation=ctx.id, action=action,
            error=error,
        )

    def running(self) -> int:
        """Operations submitted and not yet ended in this daemon."""
        with self._guard:
            return len(self._done)

    def wait(self, op_id: str, timeout: float | None) -> OperationRecord:
        with self._guard:
            done = self._done.get(op_id)
        if done is not None:
            done.wait(timeout)
        with self._guard:  # just ended here: its final record without another query
            final = self._finished.get(op_id)
        return final if final is not None else self.store.get_operation(op_id)

    def on_end(self, op_id: str, callback: Ended) -> None:
        """Call ``callback(final record)`` once ``op_id`` has ended: from the thread that
        ends it, or at once if it already has. For the API's asynchronous waiters (no thread
        held while an operation runs); the callback must only hand the record on."""
        with self._guard:
            final = self._finished.get(op_id)
            if final is None and op_id in self._done:
                self._on_end.setdefault(op_id, []).append(callback)
                return
        callback(final if final is not None else self.store.get_operation(op_id))

    def cancel(self, op_id: str) -> OperationRecord:
        record = self.store.get_operation(op_id)
        if record.status.final:
            return record
        with self._guard:
            ctx = self._contexts.get(op_id)
        if ctx is None:
            raise NotFound(f"operation '{op_id}' is not running in this daemon")
        ctx.cancel_requested.set()
        with self._guard:  # a bulk operation's running items (it starts no new ones)
            items = [c for c in self._contexts.values() if c.parent == op_id]
        for item in items:
            item.cancel_requested.set()
        return self.store.get_operation(op_id)

    def cancel_requested(self, op_id: str) -> bool:
        """Whether a cancel of the running operation ``op_id`` was asked."""
        with self._guard:
            ctx = self._contexts.get(op_id)
        return ctx is not None and ctx.cancel_requested.is_set()

    def fail_orphans(self) -> int:
        """Operations a killed daemon left pending or running are failed, not left hanging."""
        orphans = self.store.unfinished_operations()
        for record in orphans:
            self.store.update_operation(
                record.id, status=OperationStatus.FAILURE, phase="interrupted",
                error="corrald stopped while this operation ran",
            )
        return len(orphans)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.writer.close()
