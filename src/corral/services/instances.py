"""Instance orchestration: validate, lock, run the driver, keep the database true."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from corral.cluster.store import Reservation
from corral.domain import lifecycle
from corral.domain.errors import HostFailure, InvalidInput, Unsupported
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.labels import Selector
from corral.domain.lifecycle import Action, State
from corral.domain.names import FIRST_ID, validate_name
from corral.domain.resources import Resources, apply_settings
from corral.domain.undo import Undo
from corral.drivers.base import ConsoleStream, Driver, ExecResult, RuntimeState, RuntimeStatus
from corral.services.events import EventBus
from corral.services.faults import fault_point
from corral.services.foreign import ForeignSource
from corral.services.operations import OperationContext, OperationManager
from corral.services.storage import InstanceDisks, NoDisks
from corral.services.templates import TemplateService
from corral.state.netstore import NetworkStore
from corral.state.store import InstanceRecord, OperationRecord, StateStore

log = logging.getLogger("corral.instances")

_Step = Callable[[OperationContext, InstanceSpec], None]

_RUNTIME_TO_STATE = {
    RuntimeState.RUNNING: State.RUNNING,
    RuntimeState.SUSPENDED: State.SUSPENDED,
    RuntimeState.STOPPED: State.STOPPED,
}


class Reservations(Protocol):
    """Where a new instance's name and id are held beyond this database: the cluster store
    (services/cluster.py)."""

    def reserve(self, name: str) -> Reservation: ...

    def release(self, name: str, instance_id: int | None, retire: bool) -> None: ...

    def hand_over(self, name: str, instance_id: int) -> None:
        """An instance migrated in (committed here): its name and id are this host's now."""
        ...

    def ids_shared(self) -> bool:
        """Ids are unique across hosts (a cluster): one leaving by migration lives on and is
        not retired here (it may come back with it)."""
        ...


class NoReservations:
    """Nowhere: the database alone chooses (an InstanceService on its own, in tests)."""

    def reserve(self, name: str) -> Reservation:
        return Reservation(name, "", None)

    def release(self, name: str, instance_id: int | None, retire: bool) -> None:
        return None

    def hand_over(self, name: str, instance_id: int) -> None:
        return None

    def ids_shared(self) -> bool:
        return False


@dataclass(frozen=True)
class InstanceView:
    record: InstanceRecord
    state: State
    runtime: RuntimeStatus | None
    operation: str | None
    addresses: tuple[str, ...] = ()
    """Assigned NIC addresses (nics.json) merged with what the runtime reports, deduplicated."""
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_reason: str | None = None
    """Why a stopped instance stopped when Corral did not stop it ("crashed: …"), until its
    next start."""


class InstanceService:
    def __init__(
        self, store: StateStore, operations: OperationManager, events: EventBus,
        templates: TemplateService, drivers: dict[Kind, Driver], directory: Path, node: str,
    ) -> None:
        self.store = store
        self.ops = operations
        self.events = events
        self.templates = templates
        self.drivers = drivers
        self.directory = directory
        self.node = node
        self.storage: InstanceDisks = NoDisks()
        """Root disks in storage pools (services/storage); without it drivers build them."""
        directory.mkdir(parents=True, exist_ok=True)
        self.admission: Callable[
            [Resources, Resources | None], AbstractContextManager[None]
        ] = lambda _new, _old: nullcontext()
        """Over-commitment check held around recording a new instance (services/capacity)."""
        self._bare_specs: dict[int, tuple[InstanceRecord, InstanceSpec]] = {}
        self._nics = NetworkStore(store.db)
        self.on_deleted: list[Callable[[InstanceRecord], str | None]] = []
        """Called after an instance's row is gone (its snapshot rows, backup schedules); what
        they say they removed is the delete operation's result."""
        self.start_guards: list[Callable[[InstanceRecord, str], bool]] = []
        """Asked before a start, restart or resume; one raises to refuse it (the migration
        service: while a migration of the instance is unresolved), or says True when it
        changed the instance (then its row is read again)."""
        self.reservations: Reservations = NoReservations()

    # Views ----------------------------------------------------------------------------
    def spec(self, rec: InstanceRecord) -> InstanceSpec:
        return self.storage.attach(self._bare_spec(rec))

    def specs(self, records: list[InstanceRecord]) -> list[InstanceSpec]:
        """``spec`` of many, their disks found in one query. The record read before (the
        store hands out the same record for an unchanged row) gives the spec made then."""
        memo = self._bare_specs
        if len(memo) > 2 * len(records) + 256:
            memo.clear()
        bare = []
        for rec in records:
            seen = memo.get(rec.id)
            if seen is None or seen[0] is not rec:
                seen = memo[rec.id] = (rec, self._bare_spec(rec))
            bare.append(seen[1])
        return self.storage.attach_all(bare)

    def _bare_spec(self, rec: InstanceRecord) -> InstanceSpec:
        return InstanceSpec(
            id=rec.id, name=rec.name, kind=rec.kind, template=rec.template,
            resources=rec.resources, directory=self.directory / str(rec.id),
            privileged=rec.privileged,
        )

    def driver(self, kind: Kind) -> Driver:
        driver = self.drivers.get(kind)
        if driver is None:
            raise Unsupported(f"this host has no driver for {kind.value} instances")
        return driver

    def view(self, rec: InstanceRecord) -> InstanceView:
        return self._view(rec, lambda: self.driver(rec.kind).status(self.spec(rec)),
                          self.store.labels(rec.id),
                          self._nics.assigned_addresses(rec.id).get(rec.id, ()),
                          self.store.stop_reason(rec.id))

    def _view(self, rec: InstanceRecord, read: Callable[[], RuntimeStatus],
              labels: Mapping[str, str], addresses: tuple[str, ...],
              stop_reason: str | None = None) -> InstanceView:
        """The row corrected by the runtime (``read``), unless an operation holds it;
        ``addresses``: those Corral assigned to its NICs; ``stop_reason``: its recorded
        one."""
        assigned = list(addresses)
        holder = self.ops.locks.holder(rec.name)
        if holder is not None or rec.state in (State.CREATING, State.DELETING):
            return InstanceView(rec, rec.state, None, holder, tuple(assigned), labels)
        try:
            runtime = read()
        except Exception as exc:  # a broken runtime must not hide the instance from `list`
            log.warning("status of %s failed: %s", rec.name, exc)
            return InstanceView(rec, State.ERROR, None, None, tuple(assigned), labels)
        for reported in runtime.addresses:
            address = reported.split("/", 1)[0]
            if address not in assigned:
                assigned.append(address)
        state = _RUNTIME_TO_STATE.get(runtime.state, State.ERROR)
        if state != rec.state and self.ops.locks.holder(rec.name) is None:
            self.store.set_state(rec.id, state)
            if state is State.STOPPED and rec.state in (State.RUNNING, State.SUSPENDED):
                stop_reason = self._note_stop(rec, runtime)
            self.events.publish(
                "instance.state", instance=rec.name, state=state.value, previous=rec.state.value,
                **({"reason": stop_reason} if stop_reason and state is State.STOPPED else {}),
            )
        shown = stop_reason if state in (State.STOPPED, State.ERROR) else None
        return InstanceView(rec, state, runtime, None, tuple(assigned), labels, shown)

    def _note_stop(self, rec: InstanceRecord, runtime: RuntimeStatus) -> str:
        """A guest seen stopped that Corral did not stop: keep why (the driver's evidence of
        a crash, ``RuntimeStatus.details["ended"]``, else that it stopped outside Corral) and
        when, until its next start."""
        ended = runtime.details.get("ended")
        at = self.store.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        reason = (f"crashed: {ended} at {at}" if ended else
                  f"stopped outside Corral (the guest powered off, or a host tool or a crash "
                  f"stopped it while corrald was not looking) at {at}")
        log.warning("instance %s stopped without Corral: %s", rec.name, reason)
        self.store.set_stop_reason(rec.id, reason)
        return reason

    def runtime_statuses(self, records: list[InstanceRecord]) -> dict[int, RuntimeStatus]:
        """The runtime state of ``records``, one batch read per driver (no process per
        instance); an instance whose driver could not say is left out."""
        found: dict[int, RuntimeStatus] = {}
        specs = self.specs(records) if records else []
        for kind in {rec.kind for rec in records}:
            try:
                found.update(self.driver(kind).statuses([s for s in specs if s.kind is kind]))
            except Exception as exc:  # shown as ERROR per instance by _view
                log.warning("state of the %s instances failed: %s", kind.value, exc)
        return found

    def list_all(
        self, keep: Callable[[list[InstanceRecord]], list[InstanceRecord]] | None = None,
        selector: Selector | None = None,
    ) -> list[InstanceView]:
        """Every instance, or those ``keep`` keeps and ``selector`` matches (only they are
        asked for their runtime state, all in one batch per driver)."""
        records = self.store.list_instances()
        labels = self.store.all_labels()
        if keep is not None:
            records = keep(records)
        if selector is not None:
            records = [r for r in records if selector.matches(labels.get(r.id, {}))]
        asked = [rec for rec in records if rec.state not in (State.CREATING, State.DELETING)
                 and self.ops.locks.holder(rec.name) is None]
        found = self.runtime_statuses(asked)
        asked_ids = {rec.id for rec in asked}
        reasons = self.store.stop_reasons()

        def reader(rec: InstanceRecord) -> Callable[[], RuntimeStatus]:
            def read() -> RuntimeStatus:
                if rec.id not in asked_ids:  # its operation ended since: ask on its own
                    return self.driver(rec.kind).status(self.spec(rec))
                status = found.get(rec.id)
                if status is None:
                    raise LookupError("the runtime did not say")
                return status
            return read

        assigned = self._nics.assigned_addresses()
        return [self._view(rec, reader(rec), labels.get(rec.id, {}), assigned.get(rec.id, ()),
                           reasons.get(rec.id))
                for rec in records]

    def get(self, ref: str) -> InstanceView:
        return self.view(self.store.get_instance(ref))

    # Create and delete ------------------------------------------------------------------
    def create(
        self, name: str, kind: str, template: str, settings: dict[str, str],
        privileged: bool = False, start: bool = False, pool: str | None = None,
        foreign: ForeignSource | None = None, owner: str | None = None,
    ) -> OperationRecord:
        """Start creating an instance; ``owner``: the user it belongs to (must exist)."""
        validate_name(name)
        instance_kind = Kind.parse(kind)
        driver = self.driver(instance_kind)
        if foreign is not None:
            template, settings = foreign.prepare(instance_kind, settings)
        image = self.templates.obtain(template)  # in a cluster: fetched on first use
        defaults = Resources.from_dict(dict(image.metadata.get("resources", {})))
        resources = apply_settings(defaults, settings)
        if privileged and instance_kind is Kind.VM:
            raise InvalidInput("--privileged applies to containers only")
        if not privileged and instance_kind is Kind.CT and not driver.capabilities().unprivileged:
            raise Unsupported(
                "unprivileged containers are not possible on this host "
                "(no user namespaces or no subordinate ids for root); use --privileged"
            )
        if instance_kind is Kind.VM and resources.pids is not None:
            raise InvalidInput("pids applies to containers only (a VM's kernel has its own)")
        held = self.reservations.reserve(name)  # cluster-wide name and id (or nothing)
        try:
            with self.admission(resources, None):
                rec = self.store.insert_instance(
                    name, instance_kind, template, resources, privileged, self.node,
                    held.id or FIRST_ID, owner=owner,
                )
            if held.id is not None and rec.id != held.id:
                self.store.delete_instance(rec.id, retire=False)  # never used: no quarantine
                raise HostFailure(f"id {held.id} reserved in the cluster for '{name}' is in use "
                                  "in this host's database; try again")
        except BaseException:
            self.reservations.release(name, held.id, retire=False)
            raise
        spec = self.spec(rec)

        def work(ctx: OperationContext) -> None:
            with Undo(log) as undo:
                undo.push(f"remove the half-made instance '{name}'",
                          lambda: self.discard(rec, spec))
                spec.directory.mkdir(parents=True, exist_ok=False)
                fault_point("create.after_directory")
                def disk_progress(f: float, p: str) -> None:
                    ctx.progress(f * 0.6, p)

                if foreign is None:
                    self.storage.prepare(spec, image, disk_progress, pool)
                else:
                    foreign.make_disk(self.storage, spec, disk_progress, pool)
                fault_point("create.after_disk")
                made = self.spec(rec)  # with its root disk in a pool, if storage made one
                driver.create(made, image, lambda f, p: ctx.progress(0.6 + f * 0.3, p))
                fault_point("create.after_driver")
                if start:
                    ctx.progress(0.9, "starting")
                    driver.start(made, image)
            # committed with the operation's success (one transaction, not two); until then
            # the instance shows "creating" under the create's lock
            ctx.settle(rec.id, State.RUNNING if start else State.STOPPED)
            self.events.publish("instance.created", instance=name, id=rec.id, type=kind)

        try:
            return self.ops.submit("create", name, work)
        except BaseException:
            self.store.delete_instance(rec.id)
            self.reservations.release(name, rec.id, retire=True)
            raise

    def set_owner(self, ref: str, owner: str | None) -> InstanceRecord:
        """Give the instance to user ``owner`` (None: to no one, i.e. admins only)."""
        rec = self.store.get_instance(ref)
        self.store.set_owner(rec.id, owner)
        self.events.publish("instance.owner", instance=rec.name, owner=owner,
                            previous=rec.owner)
        return self.store.get_instance(str(rec.id))

    def discard(self, rec: InstanceRecord, spec: InstanceSpec) -> None:
        """Undo a failed create: stop and remove whatever exists, then forget the row."""
        driver = self.driver(rec.kind)
        with contextlib.suppress(Exception):
            if driver.status(spec).state in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
                driver.stop(spec, force=True, timeout=0)
        spec = self.spec(rec)
        try:
            driver.delete(spec)
        except Exception as exc:
            log.warning("cleanup of %s after a failed create: %s", rec.name, exc)
        self.storage.release(spec)
        shutil.rmtree(spec.directory, ignore_errors=True)
        self.store.delete_instance(rec.id)
        self.reservations.release(rec.name, rec.id, retire=True)

    def delete(self, ref: str, force: bool = False) -> OperationRecord:
        view = self.get(ref)
        rec = view.record
        if not force:
            lifecycle.check(Action.DELETE, view.state, rec.name)
        driver = self.driver(rec.kind)
        spec = self.spec(rec)

        def work(ctx: OperationContext) -> None:
            if driver.status(spec).state in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
                ctx.progress(0.1, "stopping")
                driver.stop(spec, force=True, timeout=0)
            self.store.set_state(rec.id, State.DELETING)
            ctx.progress(0.5, "removing")
            ctx.result = self._remove(rec, spec)

        return self.ops.submit("delete", rec.name, work)

    def _remove(self, rec: InstanceRecord, spec: InstanceSpec) -> str | None:
        """The rest of a delete, once the row says DELETING (again at start-up if corrald
        stopped meanwhile): the guest's runtime, disks, directory, row, name; then what
        ``on_deleted`` removes."""
        driver = self.driver(rec.kind)
        driver.delete(spec)
        fault_point("delete.after_driver")
        self.storage.release(spec)
        shutil.rmtree(spec.directory, ignore_errors=True)
        self.store.delete_instance(rec.id)
        self.reservations.release(rec.name, rec.id, retire=True)
        said = []
        for forget in self.on_deleted:
            try:
                said.append(forget(rec))
            except Exception:
                log.exception("cleaning up after deleting %s failed", rec.name)
        self.events.publish("instance.deleted", instance=rec.name, id=rec.id)
        return "; ".join(s for s in said if s) or None

    # Lifecycle --------------------------------------------------------------------------
    def _transition(
        self, ref: str, action: Action, during: State, after: State, run: _Step,
    ) -> OperationRecord:
        rec = self.store.get_instance(ref)
        if action in (Action.START, Action.RESTART, Action.RESUME):
            changed = [guard(rec, action.value) for guard in self.start_guards]
            if any(changed):
                rec = self.store.get_instance(ref)
        if action is Action.START and lifecycle.allowed(action, rec.state):
            before = rec.state  # fast path: the driver itself refuses a guest already running
        else:
            before = self.view(rec).state  # the row may be stale: ask the runtime
        lifecycle.check(action, before, rec.name)
        spec = self.spec(rec)

        def work(ctx: OperationContext) -> None:
            if after is State.RUNNING:  # a crash's reason stands until the next start
                self.store.clear_stop_reason(rec.id)
            try:
                run(ctx, spec)
            except BaseException:
                status = self.driver(rec.kind).status(spec)
                self.store.set_state(rec.id, _RUNTIME_TO_STATE.get(status.state, before))
                raise
            ctx.settle(rec.id, after)  # committed and announced with the operation's end

        return self.ops.submit(action.value, rec.name, work, during=(rec.id, during))

    def start(self, ref: str) -> OperationRecord:
        def run(ctx: OperationContext, spec: InstanceSpec) -> None:
            self.driver(spec.kind).start(spec, self.templates.get(spec.template))

        return self._transition(ref, Action.START, State.STARTING, State.RUNNING, run)

    def stop(self, ref: str, force: bool = False, timeout: float = 30.0) -> OperationRecord:
        if timeout < 0:
            raise InvalidInput("timeout must not be negative")

        def run(ctx: OperationContext, spec: InstanceSpec) -> None:
            ctx.progress(0.1, "forcing off" if force else f"shutting down (up to {timeout:g} s)")
            self.driver(spec.kind).stop(spec, force=force, timeout=timeout)

        return self._transition(ref, Action.STOP, State.STOPPING, State.STOPPED, run)

    def restart(self, ref: str, force: bool = False, timeout: float = 30.0) -> OperationRecord:
        def run(ctx: OperationContext, spec: InstanceSpec) -> None:
            driver = self.driver(spec.kind)
            ctx.progress(0.1, "stopping")
            driver.stop(spec, force=force, timeout=timeout)
            ctx.progress(0.5, "starting")
            driver.start(spec, self.templates.get(spec.template))

        return self._transition(ref, Action.RESTART, State.STOPPING, State.RUNNING, run)

    def suspend(self, ref: str) -> OperationRecord:
        def run(ctx: OperationContext, spec: InstanceSpec) -> None:
            self.driver(spec.kind).suspend(spec)

        return self._transition(ref, Action.SUSPEND, State.RUNNING, State.SUSPENDED, run)

    def resume(self, ref: str) -> OperationRecord:
        def run(ctx: OperationContext, spec: InstanceSpec) -> None:
            self.driver(spec.kind).resume(spec)

        return self._transition(ref, Action.RESUME, State.SUSPENDED, State.RUNNING, run)

    # Interaction ------------------------------------------------------------------------
    def exec(
        self, ref: str, argv: list[str], stdin: bytes = b"", timeout: float | None = 60.0
    ) -> ExecResult:
        if not argv:
            raise InvalidInput("exec needs a command")
        view = self.get(ref)
        lifecycle.check(Action.EXEC, view.state, view.record.name)
        began = time.monotonic()
        result = self.driver(view.record.kind).exec(self.spec(view.record), argv, timeout, stdin)
        # Drivers kill a command at its deadline (exit 137, as timeout -s KILL): say so.
        if timeout and result.exit_code == 137 and time.monotonic() - began >= timeout * 0.95:
            result = replace(result, timed_out=True)
        return result

    def open_console(self, ref: str) -> ConsoleStream:
        view = self.get(ref)
        lifecycle.check(Action.CONSOLE, view.state, view.record.name)
        return self.driver(view.record.kind).open_console(self.spec(view.record))

    def console_log(self, ref: str, limit: int = 65536) -> bytes:
        view = self.get(ref)
        return self.driver(view.record.kind).console_log(self.spec(view.record), limit)

    # Start-up ---------------------------------------------------------------------------
    def reconcile(self) -> None:
        """After a (re)start of the daemon: adopt running guests, fix rows a crash left."""
        for rec in self.store.list_instances():
            if rec.state is State.CREATING:
                log.warning("instance %s was half-created when corrald stopped; removing", rec.name)
                self.discard(rec, self.spec(rec))
            elif rec.state is State.DELETING:  # the guest was stopped before the row said so
                log.warning("instance %s was half-deleted when corrald stopped; finishing",
                            rec.name)
                try:
                    self._remove(rec, self.spec(rec))
                except Exception as exc:  # stays DELETING: `corral delete --force` retries
                    log.warning("finishing the delete of %s failed: %s", rec.name, exc)
        for view in self.list_all():  # one batch read per driver
            rec = view.record
            if view.runtime is not None and view.runtime.state is RuntimeState.MISSING:
                view = self._reconfigure(view)
            elif view.runtime is not None and view.runtime.state is RuntimeState.RUNNING:
                self._readopt(view)
            log.info("adopted %s (%s): %s", rec.name, rec.kind.value, view.state.value)

    def _readopt(self, view: InstanceView) -> None:
        """A running guest: its driver undoes what a start cut short by the daemon's death
        left (a VM's boosted launch weight); a failure is logged, the guest stays adopted."""
        rec = view.record
        try:
            self.driver(rec.kind).adopted(self.spec(rec))
        except Exception as exc:
            log.warning("adopting %s: %s", rec.name, exc)

    def _reconfigure(self, view: InstanceView) -> InstanceView:
        """An instance whose disk is in a pool but whose runtime is gone (a ``convert`` cut
        short between removing the old kind's runtime and making the new one's): its driver
        configures it again around the same disk (a driver's ``create`` only configures when
        storage holds the root disk)."""
        rec = view.record
        spec = self.spec(rec)
        if spec.root_disk is None or not spec.disk_path.exists():
            return view
        log.warning("instance %s has its disk but no %s runtime (a conversion cut short?): "
                    "configuring it again", rec.name, rec.kind.value)
        try:
            self.driver(rec.kind).create(spec, self.templates.get(rec.template),
                                         lambda _f, _p: None)
        except Exception as exc:  # shown as error: `corral delete` still removes it
            log.warning("configuring %s again failed: %s", rec.name, exc)
            return view
        return self.view(self.store.get_instance(str(rec.id)))
