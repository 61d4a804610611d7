"""What ends a migration that nobody ends: the target's lease watchdog (a source that stopped
talking) and, at daemon start, the roll-back of what a killed corrald left mid-way.

The commit is the single point of no return and only the source decides it: a source found
"committing" asks the target whether it committed, and only then goes forward.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

from corral.domain.errors import CorralError, NotFound
from corral.domain.lifecycle import State
from corral.domain.statuses import MigrationStatus
from corral.domain.undo import describe
from corral.services.migration import resolve
from corral.services.migration.target import Incoming, TargetSide
from corral.services.migration.watcher import Watcher
from corral.state.migstore import MigrationRecord
from corral.wire.migration import IncomingRequest

if TYPE_CHECKING:
    from corral.services.migration.service import MigrationService

log = logging.getLogger("corral.migration")


class LeaseWatchdog(Watcher):
    """Aborts reservations whose source stopped renewing its lease (one thread, started with
    the first reservation)."""

    name = "migration-lease"

    def __init__(self, target: TargetSide) -> None:
        super().__init__()
        self.target = target

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            for mid, inc in self.target.expired(time.monotonic()):
                with contextlib.suppress(CorralError):
                    self.target.abort(mid, f"the source ({inc.request.source_node}) stopped "
                                           f"talking for {inc.lease:g} s")


def recover(s: MigrationService) -> None:
    """Before instances are reconciled: roll back what a killed corrald left mid-way."""
    for rec in s.store.unfinished():
        try:
            if rec.direction == "in":
                _recover_incoming(s, rec)
            else:
                _recover_outgoing(s, rec)
        except Exception as exc:
            log.exception("recovering migration %s of %s", rec.id, rec.instance)
            s.store.update_migration(rec.id, status=MigrationStatus.FAILURE, phase="interrupted",
                                     error=f"recovery failed: {describe(exc)}")


def _recover_incoming(s: MigrationService, rec: MigrationRecord) -> None:
    try:
        inst = s.instances.store.get_instance(rec.instance)
    except NotFound:
        s.store.update_migration(rec.id, status=MigrationStatus.FAILURE, phase="interrupted",
                                 error="corrald stopped during the migration")
        return
    if inst.state is not State.CREATING:  # committed; only the record was not updated
        s.store.update_migration(rec.id, status=MigrationStatus.SUCCESS, phase="done")
        return
    request = IncomingRequest(
        migration_id=rec.id, source_node=rec.peer, name=inst.name, id=inst.id,
        kind=inst.kind.value, template=inst.template, template_version="",
        resources=inst.resources.to_dict(), privileged=inst.privileged, nics=[],
        disk_size=0, disk_allocated=0, files_size=0,
        path="live" if rec.path == "live" else "copy",
    )
    s.target.drop(Incoming(request, inst, s.instances.spec(inst), 0.0),
                  "corrald on the target stopped during the migration")


def _recover_outgoing(s: MigrationService, rec: MigrationRecord) -> None:
    """Whatever phase it recorded last, only the target knows whether it committed: asked.
    Unknown (the target unreachable) before the commit was asked: rolled back (the target
    cannot commit without it, and its lease drops the reservation); after: unresolved."""
    committed: bool | None
    if rec.phase.startswith("cleaning up"):  # the source had the commit's answer
        committed, why = True, f"{rec.peer} had committed it"
    else:
        committed, why = resolve.ask(s, rec)
    if committed is None and rec.phase == "committing":
        resolve.mark(s, rec, why)
        return
    resolve.settle(s, rec, bool(committed),
                   f"corrald on the source stopped during the migration; {why}")
