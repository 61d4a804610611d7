"""Bulk work: one parent Operation whose items are child operations.

The parent resolves its items (names, or a label selector), records one pending child per
item, then runs the items with bounded parallelism through an ``ItemRunner``. The runner is
the only thing that knows *where* an item runs: ``LocalRunner`` calls this host's services
(the child's own operation then runs on the item's thread, under the child's id); a cluster
runner will forward the item to the member that holds the instance and report its outcome.
This module never asks whether it is clustered.

Cancelling the parent skips the items not started and asks the running ones to stop at
their next step (``OperationManager.cancel`` passes it on); ``fail_fast`` skips the rest
after the first failure.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Protocol

from corral.cluster.store import PublishedInstance
from corral.domain.bulk import (
    DEFAULT_PARALLEL,
    MAX_ITEMS,
    BulkAction,
    ItemOutcome,
    ItemStatus,
    Summary,
    check_parallel,
    summarize,
)
from corral.domain.errors import CorralError, InvalidInput, NotFound
from corral.domain.labels import Selector, check_labels, parse_selector
from corral.domain.names import validate_name
from corral.domain.statuses import OperationStatus
from corral.services.operations import Cancelled, OperationContext, OperationManager, requester
from corral.state.store import InstanceRecord, OperationRecord, StateStore

log = logging.getLogger("corral.bulk")

PROGRESS_EVERY = 0.2  # seconds between the parent's progress writes


class ItemFailed(CorralError):
    """A bulk item whose work ended without a Corral error but did not succeed (a command
    that exited non-zero)."""

    code = "item_failed"
    status = 422


@dataclass(frozen=True)
class CreateSpec:
    """What every instance of a bulk create is made from (``InstanceService.create``)."""

    kind: str
    template: str
    settings: Mapping[str, str] = field(default_factory=dict)
    privileged: bool = False
    start: bool = False
    pool: str | None = None
    owner: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BulkRequest:
    action: BulkAction
    names: tuple[str, ...] = ()
    selector: str | None = None
    parallel: int = DEFAULT_PARALLEL
    fail_fast: bool = False
    force: bool = False
    """stop/restart: power off at once; delete: stop a running instance first."""
    timeout: float | None = None
    """stop/restart: seconds of grace (default 30); exec: the command's limit (None: none)."""
    argv: tuple[str, ...] = ()
    snapshot: str | None = None
    memory: bool = False
    target: str | None = None
    key_file: str | None = None
    create: CreateSpec | None = None


@dataclass(frozen=True)
class Item:
    name: str
    child: str
    """The id of its child operation (pending until it runs)."""


@dataclass(frozen=True)
class Done:
    outcome: ItemOutcome
    recorded: bool = False
    """The child operation's row already says it (the item ran as that operation here)."""


class ItemRunner(Protocol):
    """Runs one item of a bulk request, wherever the instance lives."""

    def run(self, request: BulkRequest, item: Item, parent: str) -> Done: ...


Visible = Callable[[InstanceRecord | PublishedInstance], bool]
"""Whether the caller may act on an instance (``Access.owns`` of its owner)."""

_STATUS = {ItemStatus.OK: OperationStatus.SUCCESS, ItemStatus.FAILED: OperationStatus.FAILURE,
           ItemStatus.SKIPPED: OperationStatus.SKIPPED}


def outcome_of(name: str, record: OperationRecord) -> ItemOutcome:
    """An item's outcome from its child operation's final record."""
    if record.status is OperationStatus.SUCCESS:
        said = "" if record.phase in ("", "done") else record.phase
        return ItemOutcome(name, ItemStatus.OK, said)
    if record.status is OperationStatus.SKIPPED:
        return ItemOutcome(name, ItemStatus.SKIPPED, record.phase)
    return ItemOutcome(name, ItemStatus.FAILED, record.error or record.status.value)


class BulkService:
    def __init__(self, store: StateStore, operations: OperationManager,
                 runner: ItemRunner) -> None:
        self.store = store
        self.ops = operations
        self.runner = runner
        self.check_create: Callable[[CreateSpec], None] = lambda _spec: None
        """Refuses a create spec that would fail every item (an unknown type or template)
        before anything is recorded; the daemon wires the services' own checks here."""
        self.others: Callable[[], list[PublishedInstance]] = lambda: []
        """The instances other members hold (a cluster): a selector matches them too."""
        self.elsewhere: Callable[[str], bool] = lambda _ref: False
        """Whether a named instance not on this host is one the runner can reach (held by
        another member): its item then goes to the runner instead of failing as unknown."""

    # Choosing the items ------------------------------------------------------------------
    def _targets(self, request: BulkRequest, visible: Visible) -> list[tuple[str, str | None]]:
        """(name, why it fails at once or None) for each item, in order."""
        if request.action is BulkAction.CREATE:
            if request.selector is not None:
                raise InvalidInput("create takes names, not a selector")
            if not request.names:
                raise InvalidInput("name at least one instance to create")
            for name in request.names:
                validate_name(name)
            return [(name, None) for name in request.names]
        if request.names and request.selector is not None:
            raise InvalidInput("give instance names or a selector, not both")
        if request.selector is not None:
            chosen = self._select(parse_selector(request.selector), visible)
            if not chosen:
                raise InvalidInput(f"no instance matches the selector '{request.selector}'")
            return [(name, None) for name in chosen]
        if not request.names:
            raise InvalidInput("name at least one instance or give a selector")
        found: list[tuple[str, str | None]] = []
        for ref in request.names:
            try:
                rec = self.store.get_instance(ref)
            except NotFound:
                rec = None
            if rec is None and self.elsewhere(ref):
                found.append((ref, None))
            elif rec is None or not visible(rec):  # another owner's: as if it did not exist
                found.append((ref, f"no instance '{ref}'"))
            else:
                found.append((rec.name, None))
        return found

    def _select(self, selector: Selector, visible: Visible) -> list[str]:
        labels = self.store.all_labels()
        here = [rec.name for rec in self.store.list_instances()
                if visible(rec) and selector.matches(labels.get(rec.id, {}))]
        away = sorted(i.name for i in self.others()
                      if visible(i) and selector.matches(i.labels))
        return here + [name for name in away if name not in here]

    def _check(self, request: BulkRequest) -> None:
        check_parallel(request.parallel)
        action = request.action
        if len(request.names) > MAX_ITEMS:
            raise InvalidInput(f"more than {MAX_ITEMS} instances in one request")
        if action is BulkAction.CREATE and request.create is None:
            raise InvalidInput("create needs a type and a template")
        if action is BulkAction.CREATE and request.create is not None:
            check_labels(request.create.labels)
            self.check_create(request.create)
        if action is BulkAction.EXEC and not request.argv:
            raise InvalidInput("exec needs a command")
        if action is BulkAction.SNAPSHOT and not request.snapshot:
            raise InvalidInput("snapshot needs a snapshot name")
        if action is BulkAction.BACKUP and not request.target:
            raise InvalidInput("backup needs a target")
        if request.timeout is not None and request.timeout < 0:
            raise InvalidInput("timeout must not be negative")

    # Running -----------------------------------------------------------------------------
    def submit(self, request: BulkRequest, visible: Visible = lambda _r: True) -> OperationRecord:
        """Check and resolve ``request``, record the parent and its pending children, run
        the items in the background; the parent operation at once."""
        self._check(request)
        targets = self._targets(request, visible)
        items = [Item(name, str(uuid.uuid4())) for name, _why in targets]
        refused = {item.child: why for item, (_n, why) in zip(items, targets, strict=True)
                   if why is not None}
        prepared = threading.Event()
        who = requester.get()

        def work(ctx: OperationContext) -> None:
            prepared.wait()
            self._run(ctx, request, items, refused, who)

        parent = self.ops.submit(request.action.operation, None, work)
        try:
            self.store.insert_children(
                parent.id, [(i.child, request.action.value, i.name) for i in items], who)
            for child, why in refused.items():
                self.store.update_operation(child, status=OperationStatus.FAILURE,
                                            phase="failure", error=why)
        finally:
            prepared.set()
        return parent

    def _run(self, ctx: OperationContext, request: BulkRequest, items: list[Item],
             refused: dict[str, str], who: str | None) -> None:
        outcomes: dict[str, ItemOutcome] = {
            i.child: ItemOutcome(i.name, ItemStatus.FAILED, refused[i.child])
            for i in items if i.child in refused}
        queue = [i for i in items if i.child not in refused]
        total = len(items)
        stop_reason = ""
        if request.fail_fast and outcomes:
            stop_reason = "skipped: an item failed (--fail-fast)"
        last_report = 0.0

        def one(item: Item) -> Done:
            token = requester.set(who)  # child operations are the requester's too
            try:
                return self.runner.run(request, item, ctx.id)
            except CorralError as exc:
                return Done(ItemOutcome(item.name, ItemStatus.FAILED, exc.message))
            except Exception as exc:  # a bug must fail the item, not the whole batch
                log.exception("bulk %s of %s crashed", request.action.value, item.name)
                return Done(ItemOutcome(item.name, ItemStatus.FAILED, f"internal error: {exc}"))
            finally:
                requester.reset(token)

        with ThreadPoolExecutor(request.parallel, thread_name_prefix="bulk") as pool:
            running: dict[Future[Done], Item] = {}
            while queue or running:
                if ctx.cancel_requested.is_set() and not stop_reason:
                    stop_reason = "skipped: the bulk operation was cancelled"
                while queue and not stop_reason and len(running) < request.parallel:
                    item = queue.pop(0)
                    running[pool.submit(one, item)] = item
                if not running:
                    break
                finished, _ = wait(running, timeout=PROGRESS_EVERY, return_when=FIRST_COMPLETED)
                for future in finished:
                    item = running.pop(future)
                    done = future.result()
                    outcomes[item.child] = done.outcome
                    if not done.recorded:
                        self._record(item.child, done.outcome)
                    if (request.fail_fast and done.outcome.status is ItemStatus.FAILED
                            and not stop_reason):
                        stop_reason = "skipped: an item failed (--fail-fast)"
                now = time.monotonic()
                if now - last_report >= PROGRESS_EVERY and not ctx.cancel_requested.is_set():
                    last_report = now
                    ctx.progress(len(outcomes) / total, f"{len(outcomes)}/{total} done")
        for item in queue:  # never started
            outcomes[item.child] = ItemOutcome(item.name, ItemStatus.SKIPPED, stop_reason)
        self._skip(queue, stop_reason)
        summary = summarize(outcomes[i.child] for i in items)
        if not ctx.cancel_requested.is_set():
            ctx.progress(1.0, str(summary))
        self._finish(ctx, summary)

    def _skip(self, items: list[Item], why: str) -> None:
        for item in items:
            self.store.update_operation(item.child, status=OperationStatus.SKIPPED, phase=why)

    def _record(self, child: str, outcome: ItemOutcome) -> None:
        status = _STATUS[outcome.status]
        failed = outcome.status is ItemStatus.FAILED
        self.store.update_operation(
            child, status=status, progress=1.0 if status is OperationStatus.SUCCESS else None,
            phase=status.value if failed else (outcome.message or "done"),
            error=outcome.message if failed else None)

    @staticmethod
    def _finish(ctx: OperationContext, summary: Summary) -> None:
        ctx.result = str(summary)
        if ctx.cancel_requested.is_set():
            raise Cancelled(f"cancelled: {summary}")
        if not summary.succeeded:
            raise ItemFailed(str(summary))

    def children(self, parent: str) -> list[OperationRecord]:
        return self.store.children(parent)
