"""A migration whose commit the source asked for but whose outcome it cannot learn (the target
is unreachable): neither go forward nor roll back, since the target may run the instance.

The source keeps its copy stopped and marked (``MigrationStatus.UNRESOLVED``, a stop reason
``info`` shows), refuses to start, resume or migrate it, and asks the target again: at every
start attempt and every ``CORRAL_MIGRATION_RESOLVE_INTERVAL`` seconds (default 30). An admin
may decide without the target: ``corral migration resolve NAME --keep-source|--keep-target``.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from typing import TYPE_CHECKING

from corral.domain.errors import Conflict, CorralError, InvalidInput, NotFound
from corral.domain.lifecycle import State
from corral.domain.statuses import MigrationStatus
from corral.domain.undo import describe
from corral.drivers.base import RuntimeState
from corral.drivers.migration import (
    CHECKPOINT_DIR,
    MigrationPath,
    dump_complete,
    migration_hooks,
)
from corral.migration.peer import PeerClient, PeerError, env_float
from corral.services.migration.source import remove_source
from corral.services.migration.watcher import Watcher
from corral.state.migstore import MigrationRecord
from corral.state.store import InstanceRecord

if TYPE_CHECKING:
    from corral.domain.instance import InstanceSpec
    from corral.services.migration.service import MigrationService

log = logging.getLogger("corral.migration")

KEEP = ("source", "target")


def interval() -> float:
    return env_float("CORRAL_MIGRATION_RESOLVE_INTERVAL", 30.0)


def ask(s: MigrationService, rec: MigrationRecord) -> tuple[bool | None, str]:
    """Did the target commit ``rec``? (True, False, or None: it cannot say), and why. A
    reservation still open there is aborted first: after that it can never commit."""
    try:
        remote = s.remotes.get(rec.peer)
    except NotFound:
        return None, f"'{rec.peer}' is no longer a paired host"
    try:
        with PeerClient(remote, timeout=10) as peer:
            try:
                status = peer.status(rec.id).get("status")
            except PeerError as exc:
                if exc.peer_status == 404:
                    return False, f"{rec.peer} has no record of it"
                raise
            if status == MigrationStatus.SUCCESS:
                return True, f"{rec.peer} committed it"
            if status == MigrationStatus.RUNNING:  # refused (409) if it committed meanwhile
                peer.abort(rec.id, "the source could not learn the commit's outcome")
                return False, f"{rec.peer} had not committed it (aborted there)"
            return False, f"{rec.peer} did not commit it ({status})"
    except CorralError as exc:
        return None, exc.message


def instance_of(s: MigrationService, rec: MigrationRecord) -> InstanceRecord | None:
    try:
        return s.instances.store.get_instance(
            rec.instance if rec.instance_id is None else str(rec.instance_id))
    except NotFound:
        return None


def reason_of(rec: MigrationRecord, why: str) -> str:
    return (f"migration to {rec.peer} unresolved: {why}; {rec.peer} may run it. Corral asks "
            f"{rec.peer} again at each start and every {interval():g} s; or decide: corral "
            f"migration resolve {rec.instance} --keep-source|--keep-target")


def mark(s: MigrationService, rec: MigrationRecord, why: str) -> None:
    """Keep the source's copy stopped and say why, until the outcome is known."""
    inst = instance_of(s, rec)
    if inst is not None:
        spec = s.instances.spec(inst)
        driver = s.instances.driver(inst.kind)
        if rec.path == MigrationPath.LIVE:  # its QEMU, paused after the switch-over: ends
            migration_hooks(driver).recover_source(spec, resume=False)
        with contextlib.suppress(CorralError):
            if driver.status(spec).state in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
                driver.stop(spec, force=True, timeout=0)
        s.instances.store.set_state(inst.id, State.STOPPED)
        s.instances.store.set_stop_reason(inst.id, reason_of(rec, why))
    s.store.update_migration(rec.id, status=MigrationStatus.UNRESOLVED, phase="unresolved",
                             error=f"the commit's outcome is unknown: {why}")
    log.warning("migration %s of %s to %s unresolved: %s", rec.id, rec.instance, rec.peer, why)
    s.resolver.ensure()


def roll_back_source(s: MigrationService, rec: MigrationRecord, inst: InstanceRecord | None,
                     resume: bool) -> list[str]:
    """The instance is here again, running if it ran and ``resume``."""
    if inst is None:
        return []
    spec = s.instances.spec(inst)
    was_running = bool(rec.details.get("was_running")) and resume
    problems: list[str] = []
    driver = s.instances.driver(inst.kind)
    if rec.path == MigrationPath.LIVE and rec.status is not MigrationStatus.UNRESOLVED:
        problems = migration_hooks(driver).recover_source(spec, resume=was_running)
    elif was_running and (rec.details.get("stopped") or rec.path == MigrationPath.LIVE):
        problems = _resume_stopped(s, inst, spec)
    return problems


def _resume_stopped(s: MigrationService, inst: InstanceRecord,
                    spec: InstanceSpec) -> list[str]:
    """A source the move stopped runs again: restored from its checkpoint where a whole dump
    is there (``dump_complete``: its processes go on), else started from its disk. The
    problems."""
    driver = s.instances.driver(inst.kind)
    images = spec.directory / CHECKPOINT_DIR
    problems: list[str] = []
    try:
        if driver.status(spec).state is not RuntimeState.STOPPED:
            return []
        template = s.instances.templates.get(inst.template)
        if dump_complete(images):
            hooks = migration_hooks(driver)
            try:
                hooks.settle(spec)
                hooks.restore(spec, template, images)
                log.info("restored %s from its checkpoint", inst.name)
                return []
            except CorralError as exc:
                problems.append(f"restoring its checkpoint failed ({exc.message}): started")
        driver.start(spec, template)
    except Exception as exc:
        problems.append(f"starting it again failed: {describe(exc)}")
    finally:
        shutil.rmtree(images, ignore_errors=True)
    return problems


def settle(s: MigrationService, rec: MigrationRecord, committed: bool, why: str,
           resume: bool = True) -> None:
    """Go forward (the instance lives on the target: the source's copy goes) or back."""
    inst = instance_of(s, rec)
    if committed:
        if inst is not None:
            remove_source(s, inst)
        s.store.update_migration(rec.id, status=MigrationStatus.SUCCESS, phase="done",
                                 error=None, details={"resolved": why})
        log.warning("migration %s of %s: %s; gone from here", rec.id, rec.instance, why)
        return
    problems = roll_back_source(s, rec, inst, resume)
    if inst is not None:
        s.instances.store.clear_stop_reason(inst.id)
    s.store.update_migration(
        rec.id, status=MigrationStatus.FAILURE, phase="rolled back",
        error=f"rolled back: {why}" + (f" ({'; '.join(problems)})" if problems else ""))
    log.warning("migration %s of %s rolled back: %s", rec.id, rec.instance, why)


class Resolver(Watcher):
    """Asks the targets of unresolved migrations again (one thread, while there are any)."""

    name = "migration-resolve"

    def __init__(self, service: MigrationService) -> None:
        super().__init__()
        self.s = service
        self.lock = threading.Lock()
        """One question and its consequence at a time (the thread, a start, an admin)."""

    def _watch(self) -> None:
        while not self._stop.wait(interval()):
            pending = self.s.store.unresolved()
            if not pending:
                return
            for rec in pending:
                with contextlib.suppress(Exception):
                    self.again(rec, resume=True)

    def again(self, rec: MigrationRecord, resume: bool) -> MigrationRecord:
        """Ask once more; settle if the target answers. The record as it is then."""
        with self.lock:
            rec = self.s.store.get_migration(rec.id)
            if rec.status is not MigrationStatus.UNRESOLVED:
                return rec
            committed, why = ask(self.s, rec)
            if committed is None:
                inst = instance_of(self.s, rec)
                if inst is not None:  # the latest words, for `info`
                    self.s.instances.store.set_stop_reason(inst.id, reason_of(rec, why))
                return rec
            settle(self.s, rec, committed, why, resume)
            return self.s.store.get_migration(rec.id)

    def check_start(self, inst: InstanceRecord, action: str = "start") -> bool:
        """Before a start, a resume or a migration of ``inst``: refuse while one of its
        migrations is unresolved (asking its target again first). Whether one was settled
        (rolled back: the instance's row changed)."""
        pending = self.s.store.unresolved(inst.id)
        for rec in pending:
            rec = self.again(rec, resume=False)
            if rec.status is MigrationStatus.SUCCESS:
                raise NotFound(f"'{inst.name}' moved to {rec.peer} (the migration {rec.id[:8]} "
                               f"was committed there): it is no longer on this host")
            if rec.status is MigrationStatus.UNRESOLVED:
                why = (rec.error or "").removeprefix("the commit's outcome is unknown: ")
                raise Conflict(f"cannot {action} '{inst.name}': {reason_of(rec, why)}")
        return bool(pending)

    def force(self, name: str, keep: str) -> MigrationRecord:
        """An admin's decision: keep the source's copy (rolled back, started if it ran) or
        the target's (the source's copy goes). The target's answer, if it gives one, wins."""
        if keep not in KEEP:
            raise InvalidInput(f"keep what? want one of: {', '.join(KEEP)}")
        found = [r for r in self.s.store.unresolved() if r.instance == name]
        if not found:
            raise NotFound(f"'{name}' has no unresolved migration")
        with self.lock:
            rec = self.s.store.get_migration(found[0].id)
            if rec.status is not MigrationStatus.UNRESOLVED:
                return rec
            committed, why = ask(self.s, rec)
            if committed is not None:
                settle(self.s, rec, committed, why)
                if committed != (keep == "target"):
                    raise Conflict(f"{rec.peer} answered: {why}; settled so, not as asked "
                                   f"(--keep-{keep})")
                return self.s.store.get_migration(rec.id)
            settle(self.s, rec, keep == "target",
                   f"an admin kept the {keep}'s copy ({rec.peer}: {why})")
            return self.s.store.get_migration(rec.id)
