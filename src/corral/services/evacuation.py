"""`corral host evacuate NODE` and `corral host restore NODE`: a member emptied and refilled.

Both run on NODE itself (asked elsewhere, the request is forwarded there) as one bulk
operation with a child per instance (``BulkService`` with a runner of their own):

* evacuate: cordon NODE, then migrate each of its instances to the member placement picks
  (``Placer.pick``: online, uncordoned, runs the kind, room under its policy), on the path
  ``choose_path`` finds best for it (live, checkpoint, pre-copy, offline for a stopped one).
  An instance no member can take fails its item -- or, with ``--stop``, is stopped where it
  is (the item says why). Each instance sent away is recorded in ``STATE_DIR/evacuated.json``
  (name -> the member it went to) before it goes.
* restore: uncordon NODE, then ask each recorded instance's present owner (the cluster
  store's ``locate``: it may have moved again) to migrate it back to NODE, following that
  member's operation to its end; one back (or found here already) leaves the record.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.domain.bulk import BulkAction, ItemOutcome, ItemStatus
from corral.domain.errors import HostFailure, InvalidInput, NotFound
from corral.domain.lifecycle import State
from corral.services.bulk import BulkRequest, BulkService, Done, Item, outcome_of
from corral.services.bulk_cluster import answer, follow
from corral.services.forwarding import MEMBER, Forwarded
from corral.services.placement import NoRoom, move_ask
from corral.state.database import utcnow
from corral.state.store import OperationRecord
from corral.wire.migration import MigrateRequest

if TYPE_CHECKING:
    from corral.domain.users import Caller
    from corral.services.cluster import ClusterService
    from corral.services.migration import MigrationService
    from corral.services.operations import OperationManager



class Moves:
    """``evacuated.json``: the instances sent away from this member, and where."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def read(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        data = json.loads(self.path.read_text())
        return dict(data) if isinstance(data, dict) else {}

    def _write(self, data: dict[str, dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.path)

    def add(self, name: str, to: str) -> None:
        with self._lock:
            data = self.read()
            data[name] = {"to": to, "at": utcnow().isoformat()}
            self._write(data)

    def drop(self, name: str) -> None:
        with self._lock:
            data = self.read()
            if data.pop(name, None) is not None:
                self._write(data)


class EvacuateRunner:
    """Each item: migrate the instance to the member placement picks (or stop it)."""

    def __init__(self, owner: Evacuation) -> None:
        self.owner = owner

    def run(self, request: BulkRequest, item: Item, parent: str) -> Done:
        o = self.owner
        instances = o.migrations.instances
        rec = instances.store.get_instance(item.name)
        try:
            target = o.cluster.placer.pick(move_ask(rec), o.node, rec.name)
        except NoRoom as exc:
            if not request.force:
                raise
            if instances.get(item.name).state is State.STOPPED:
                return Done(ItemOutcome(item.name, ItemStatus.SKIPPED,
                                        f"stays here, stopped: {exc.message}"))
            final = o.ops.run_item(parent, item.child,
                                   lambda: instances.stop(item.name, force=True, timeout=30))
            if final.status.value != "success":
                return Done(outcome_of(item.name, final), recorded=True)
            said = f"stopped here: {exc.message}"
            o.store_phase(item.child, said)
            return Done(ItemOutcome(item.name, ItemStatus.OK, said), recorded=True)
        o.moves.add(item.name, target)
        final = o.ops.run_item(parent, item.child, lambda: o.migrations.migrate(
            item.name, MigrateRequest(target=target, together=True)))
        if final.status.value != "success":
            o.moves.drop(item.name)  # rolled back: it is still here
            return Done(outcome_of(item.name, final), recorded=True)
        said = f"moved to {target}"
        o.store_phase(item.child, said)
        return Done(ItemOutcome(item.name, ItemStatus.OK, said), recorded=True)


class RestoreRunner:
    """Each item: ask the member holding the instance now to migrate it back here."""

    def __init__(self, owner: Evacuation) -> None:
        self.owner = owner

    def run(self, request: BulkRequest, item: Item, parent: str) -> Done:
        o = self.owner
        store = o.cluster.store
        where = store.locate(item.name)
        if where == o.node:
            o.moves.drop(item.name)
            return Done(ItemOutcome(item.name, ItemStatus.SKIPPED, "already here"))
        info = None if where is None else store.node_info(where)
        if info is None:
            o.moves.drop(item.name)
            raise NotFound(f"'{item.name}' is no longer in the cluster")
        body = json.dumps({"target": o.node, "together": True}).encode()
        started = answer(o.cluster.forwarder.forward(
            info, "POST", f"/api/v1/instances/{item.name}/migrate", "", body,
            "application/json", MEMBER), info.node)
        final = follow(o.cluster.forwarder, info, started, MEMBER)
        if final["status"] != "success":
            raise HostFailure(f"migration back from {where}: "
                              f"{final.get('error') or final['status']}")
        o.moves.drop(item.name)
        return Done(ItemOutcome(item.name, ItemStatus.OK, f"back from {where}"))


class Evacuation:
    def __init__(self, node: str, state_dir: Path, cluster: ClusterService,
                 migrations: MigrationService, ops: OperationManager) -> None:
        self.node = node
        self.cluster = cluster
        self.migrations = migrations
        self.ops = ops
        self.moves = Moves(state_dir / "evacuated.json")
        store = migrations.instances.store
        self._evacuate = BulkService(store, ops, EvacuateRunner(self))
        self._restore = BulkService(store, ops, RestoreRunner(self))
        self._restore.elsewhere = lambda _ref: True  # its items are on other members

    def store_phase(self, child: str, phase: str) -> None:
        self.migrations.instances.store.update_operation(child, phase=phase)

    def _elsewhere(self, node: str, path: str, body: dict[str, Any],
                   caller: Caller) -> Forwarded | None:
        """Forward the request to ``node`` unless it is this member."""
        if node == self.node:
            return None
        if not self.cluster.store.clustered:
            raise NotFound(f"no member named '{node}': this host is in no cluster")
        info = self.cluster.store.node_info(node)
        if info is None:
            raise NotFound(f"no member named '{node}'")
        return self.cluster.forwarder.forward(
            info, "POST", path, "", json.dumps(body).encode(), "application/json", caller)

    def evacuate(self, node: str, stop: bool, parallel: int,
                 caller: Caller) -> OperationRecord | Forwarded:
        body = {"stop": stop, "parallel": parallel}
        away = self._elsewhere(node, f"/api/v1/cluster/members/{node}/evacuate", body, caller)
        if away is not None:
            return away
        if not self.cluster.store.clustered:
            raise InvalidInput(f"'{node}' is in no cluster: there is no member to evacuate to")
        names = tuple(r.name for r in self.migrations.instances.store.list_instances())
        if not names:
            raise InvalidInput(f"'{node}' holds no instance: nothing to evacuate")
        self.cluster.set_cordoned(node, True)
        return self._evacuate.submit(BulkRequest(BulkAction.MIGRATE, names=names,
                                                 parallel=parallel, force=stop))

    def restore(self, node: str, parallel: int,
                caller: Caller) -> OperationRecord | Forwarded:
        away = self._elsewhere(node, f"/api/v1/cluster/members/{node}/restore",
                               {"parallel": parallel}, caller)
        if away is not None:
            return away
        names = tuple(sorted(self.moves.read()))
        if not names:
            raise InvalidInput(f"'{node}' has nothing to restore: no instance was evacuated "
                               "from it (or all are back)")
        self.cluster.set_cordoned(node, False)
        return self._restore.submit(BulkRequest(BulkAction.MIGRATE, names=names,
                                                parallel=parallel))

