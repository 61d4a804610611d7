"""The ``ItemRunner`` of one host: each item through this host's services.

The item's operation (a start, a create, …) is submitted by the very service call a single
request makes, and runs on the bulk worker's thread as the item's child operation
(``OperationManager.run_item``): a bulk start is N ordinary starts, with the same locks,
checks and undo. ``exec`` is not an operation on its own (it answers in the request): here
it becomes one, holding no lock, whose result is the command's exit status and output tail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from corral.domain.bulk import BulkAction, ItemOutcome, ItemStatus
from corral.domain.errors import InvalidInput
from corral.domain.lifecycle import State
from corral.services.bulk import BulkRequest, Done, Item, ItemFailed, outcome_of
from corral.services.operations import OperationContext
from corral.state.store import OperationRecord

if TYPE_CHECKING:
    from corral.services.backups import BackupService
    from corral.services.instances import InstanceService
    from corral.services.snapshots import SnapshotService

TAIL = 160  # characters of a command's output kept as an exec item's result


def tail(data: bytes) -> str:
    text = data.decode(errors="replace").strip()
    last = text.splitlines()[-1] if text else ""
    return last if len(last) <= TAIL else "…" + last[-TAIL:]


ALREADY = {BulkAction.START: (State.RUNNING, "already running"),
           BulkAction.STOP: (State.STOPPED, "already stopped")}
"""Items already in the state asked for: skipped, not failed (a bulk start of a set where
some run is no error)."""


class LocalRunner:
    def __init__(self, instances: InstanceService, snapshots: SnapshotService,
                 backups: BackupService) -> None:
        self.instances = instances
        self.snapshots = snapshots
        self.backups = backups
        self.migrate: Callable[[str, str | None], OperationRecord] | None = None
        """Migrate an instance to a target (None: the member placement picks); the daemon
        wires the migration service here."""

    def run(self, request: BulkRequest, item: Item, parent: str) -> Done:
        already = ALREADY.get(request.action)
        if already is not None:
            state = self.instances.store.get_instance(item.name).state
            if state is already[0]:
                return Done(ItemOutcome(item.name, ItemStatus.SKIPPED, already[1]))
        final = self.instances.ops.run_item(parent, item.child, self._submit(request, item.name))
        if request.action is BulkAction.CREATE and request.create is not None \
                and request.create.labels and final.status.value == "success":
            rec = self.instances.store.get_instance(item.name)
            self.instances.store.change_labels(rec.id, request.create.labels, [],
                                               lambda _labels: None)
        return Done(outcome_of(item.name, final), recorded=True)

    def _submit(self, request: BulkRequest, name: str) -> Callable[[], OperationRecord]:
        action, s = request.action, self.instances
        grace = 30.0 if request.timeout is None else request.timeout
        if action is BulkAction.CREATE:
            spec = request.create
            assert spec is not None  # BulkService._check
            return lambda: s.create(name, spec.kind, spec.template, dict(spec.settings),
                                    privileged=spec.privileged, start=spec.start,
                                    pool=spec.pool, owner=spec.owner)
        if action is BulkAction.START:
            return lambda: s.start(name)
        if action is BulkAction.STOP:
            return lambda: s.stop(name, force=request.force, timeout=grace)
        if action is BulkAction.RESTART:
            return lambda: s.restart(name, force=request.force, timeout=grace)
        if action is BulkAction.DELETE:
            return lambda: s.delete(name, force=request.force)
        if action is BulkAction.SNAPSHOT:
            snapshot = request.snapshot or ""
            return lambda: self.snapshots.create(name, snapshot, request.memory)
        if action is BulkAction.BACKUP:
            target = request.target or ""
            return lambda: self.backups.create(name, target, request.key_file)
        if action is BulkAction.MIGRATE:
            migrate = self.migrate
            if migrate is None:
                raise InvalidInput("this host cannot migrate")
            return lambda: migrate(name, request.target)
        return lambda: self._exec(request, name)

    def _exec(self, request: BulkRequest, name: str) -> OperationRecord:
        argv = list(request.argv)

        def work(ctx: OperationContext) -> None:
            done = self.instances.exec(name, argv, b"", request.timeout)
            if done.timed_out:
                raise ItemFailed(f"killed after {request.timeout:g} s")
            if done.exit_code != 0:
                said = tail(done.stderr) or tail(done.stdout)
                raise ItemFailed(f"exit {done.exit_code}" + (f": {said}" if said else ""))
            said = tail(done.stdout)
            ctx.result = "exit 0" + (f": {said}" if said else "")

        return self.instances.ops.submit("exec", name, work, lock=False)
