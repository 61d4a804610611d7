"""Clones (copy-on-write where the pool allows) and container <-> VM conversion.

Conversion is a reboot, not a copy: every root image is an unshifted ext4 filesystem that
both kinds boot (a container through an idmapped host mount, a VM as /dev/vda), so only the
runtime configuration changes. The instance keeps its row (id, name), its NICs file (MACs,
addresses), its resources and its disks; the pool's used space does not change.

A clone gets every resource key of its source and a NIC on each of its networks (new MACs and
addresses, services/nic_carry) with its bandwidth rules, unless ``--no-nics``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from corral.domain.errors import Conflict, InvalidInput, Unsupported
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.lifecycle import State
from corral.domain.names import FIRST_ID, validate_name
from corral.domain.undo import Undo
from corral.drivers.base import Driver, RuntimeState
from corral.services import nic_carry
from corral.services.faults import fault_point
from corral.services.foreign import FOREIGN_TEMPLATE
from corral.services.instances import InstanceService
from corral.services.networks import NetworkService
from corral.services.operations import OperationContext
from corral.services.storage import StorageService
from corral.state.store import OperationRecord

log = logging.getLogger("corral.convert")
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class ConvertService:
    instances: InstanceService
    storage: StorageService
    networks: NetworkService | None = None

    # Clone -----------------------------------------------------------------------------------
    def clone(self, ref: str, new_name: str, pool: str | None = None,
              nics: bool = True) -> OperationRecord:
        """A new stopped instance with copies of every disk of ``ref`` (which must be stopped:
        a running guest's filesystem is not consistent on disk), its resources and (unless
        not ``nics``) NICs on its networks and its bandwidth rules."""
        svc = self.instances
        validate_name(new_name)
        view = svc.get(ref)
        src = view.record
        if view.state is not State.STOPPED:
            raise Conflict(f"'{src.name}' is {view.state.value}; stop it before cloning")
        if not self.storage.store.disks(src.id):
            raise Unsupported(f"'{src.name}' has no disks in a storage pool; it cannot be "
                              "cloned")
        if pool is not None:
            self.storage.pool(pool)  # unknown pool: a clear 404 now
        image = svc.templates.get(src.template)
        driver = svc.driver(src.kind)
        carry = nic_carry.of_instance(self.networks, src.id) if nics else None
        if carry is not None:
            nic_carry.check(self.networks, carry, src.name)
        rec = svc.store.insert_instance(new_name, src.kind, src.template, src.resources,
                                        src.privileged, svc.node, FIRST_ID, owner=src.owner)
        base_spec = svc.spec(rec)

        def work(ctx: OperationContext) -> None:
            with Undo(log) as undo:
                undo.push(f"remove the half-made clone '{new_name}'",
                          lambda: svc.discard(rec, base_spec))
                base_spec.directory.mkdir(parents=True, exist_ok=False)
                ctx.progress(0.0, "cloning disks")
                cow = self.storage.clone_disks(src.id, rec.id, pool,
                                               lambda f, p: ctx.progress(f * 0.9, p))
                ctx.progress(0.9, "configuring" + (" (copy-on-write)" if cow else ""))
                driver.create(svc.spec(rec), image, lambda f, p: None)
                made = nic_carry.place(self.networks, rec, carry, False) if carry else []
            ctx.result = nic_carry.report(new_name, carry, made, rec.resources)
            svc.store.set_state(rec.id, State.STOPPED)
            svc.events.publish("instance.created", instance=new_name, id=rec.id,
                               type=src.kind.value, cloned_from=src.name, cow=cow)

        try:
            return svc.ops.submit("clone", new_name, work)
        except BaseException:
            svc.store.delete_instance(rec.id)
            raise

    # Convert ---------------------------------------------------------------------------------
    def convert(self, ref: str, to: str, force: bool = False) -> OperationRecord:
        """``force``: a running instance may convert (it reboots); refused without."""
        svc = self.instances
        target = Kind.parse(to)
        view = svc.get(ref)
        rec = view.record
        if rec.kind is target:
            raise InvalidInput(f"'{rec.name}' is already a {target.value}")
        if view.state not in (State.STOPPED, State.RUNNING):
            raise Conflict(f"'{rec.name}' is {view.state.value}; only a stopped or running "
                           "instance converts")
        new_driver = svc.driver(target)
        old_driver = svc.driver(rec.kind)
        image = svc.templates.get(rec.template)
        spec = svc.spec(rec)
        if spec.root_disk is None:
            raise Unsupported(f"'{rec.name}' has its root disk outside any storage pool "
                              "(made before pools); it cannot convert")
        if target is Kind.VM:
            if not image.kernel.is_file():
                raise Unsupported(f"template '{image.name}' has no kernel; '{rec.name}' "
                                  "cannot boot as a VM")
            if rec.privileged:
                raise Unsupported(f"'{rec.name}' is a privileged container; a VM has no such "
                                  "mode (convert an unprivileged container)")
            if getattr(rec.resources, "pids", None) is not None:
                raise InvalidInput(f"'{rec.name}' has a pids limit, which a VM cannot have; "
                                   "unset it first")
        if target is Kind.CT and rec.template == FOREIGN_TEMPLATE:
            raise Unsupported(f"'{rec.name}' boots a foreign disk image (no Corral root "
                              "filesystem); only VMs made from templates become containers")
        if target is Kind.CT and not new_driver.capabilities().unprivileged:
            raise Unsupported("unprivileged containers are not possible on this host")
        was_running = view.state is State.RUNNING
        if was_running and not force:
            raise Conflict(f"'{rec.name}' is running: converting it to a {target.value} "
                           "reboots it; use --force (or stop it first)")

        def work(ctx: OperationContext) -> None:
            if was_running:
                ctx.progress(0.05, f"stopping the {rec.kind.value}")
                old_driver.stop(spec, force=False, timeout=STOP_TIMEOUT)
            svc.store.set_state(rec.id, State.STOPPED)
            ctx.progress(0.3, f"removing the {rec.kind.value} runtime (the disk stays)")
            old_driver.delete(spec)
            fault_point("convert.after_old_runtime")
            with Undo(log) as undo:
                svc.store.set_kind(rec.id, target)
                fault_point("convert.after_kind")
                undo.push(f"make '{rec.name}' a {rec.kind.value} again",
                          lambda: self._back_to(rec.id, spec, was_running))
                new_spec = svc.spec(svc.store.get_instance(str(rec.id)))
                ctx.progress(0.5, f"configuring the {target.value}")
                new_spec.directory.mkdir(parents=True, exist_ok=True)
                undo.push(f"remove the {target.value} runtime",
                          lambda: new_driver.delete(new_spec))
                new_driver.create(new_spec, image, lambda f, p: None)
                if was_running:
                    ctx.progress(0.7, f"starting as a {target.value}")
                    svc.store.set_state(rec.id, State.STARTING)
                    undo.push(f"stop the {target.value}", lambda: _stop(new_driver, new_spec))
                    new_driver.start(new_spec, image)
            svc.store.set_state(rec.id, State.RUNNING if was_running else State.STOPPED)
            svc.events.publish("instance.converted", instance=rec.name, id=rec.id,
                               type=target.value, previous=rec.kind.value)

        return svc.ops.submit("convert", rec.name, work)

    def _back_to(self, instance_id: int, old_spec: InstanceSpec, was_running: bool) -> None:
        """Conversion failed: the instance goes back to its old kind (its disk never moved)."""
        svc = self.instances
        old_driver = svc.driver(old_spec.kind)
        svc.store.set_kind(instance_id, old_spec.kind)
        try:
            image = svc.templates.get(old_spec.template)
            old_spec.directory.mkdir(parents=True, exist_ok=True)
            old_driver.create(old_spec, image, lambda f, p: None)
            if was_running:
                old_driver.start(old_spec, image)
                svc.store.set_state(instance_id, State.RUNNING)
            else:
                svc.store.set_state(instance_id, State.STOPPED)
        except Exception as exc:
            log.error("rolling back the conversion of %s failed: %s", old_spec.name, exc)
            svc.store.set_state(instance_id, State.ERROR)


def _stop(driver: Driver, spec: InstanceSpec) -> None:
    if driver.status(spec).state != RuntimeState.STOPPED:
        driver.stop(spec, force=True, timeout=0)
