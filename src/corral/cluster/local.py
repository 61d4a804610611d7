"""The cluster store of a host that is in no cluster: the local database is the whole truth.

Names and ids are already unique in it (the instance insert checks and chooses them in one
transaction), so a reservation only says "the database chooses"; the one member is this
host, always online; its instances are the database's rows. The cordon flag is a file in
the state directory, so a cordoned single host stays cordoned across restarts.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from corral.cluster.store import (
    Member,
    NodeInfo,
    PublishedInstance,
    PublishedTemplate,
    Reservation,
)
from corral.domain.groups import Group, Rule
from corral.state.groupstore import GroupStore
from corral.state.store import InstanceRecord, StateStore


def published(rec: InstanceRecord, state: str | None = None,
              addresses: tuple[str, ...] = (),
              labels: dict[int, dict[str, str]] | None = None) -> PublishedInstance:
    """The published form of a local row (``state``: the runtime-corrected one; ``labels``:
    every instance's, by id, as ``StateStore.all_labels``)."""
    return PublishedInstance(
        name=rec.name, id=rec.id, kind=rec.kind.value, state=state or rec.state.value,
        node=rec.node, template=rec.template, resources=rec.resources.to_dict(),
        privileged=rec.privileged, owner=rec.owner,
        created_at=rec.created_at.isoformat() + "Z", addresses=addresses,
        labels=dict((labels or {}).get(rec.id, {})),
    )


class LocalClusterStore:
    clustered = False

    def __init__(self, store: StateStore, node: str, state_dir: Path) -> None:
        self.store = store
        self.node = node
        self._cordon_file = state_dir / "cordoned"
        self._info = NodeInfo(node, None, None)
        self._facts: dict[str, Any] = {}
        self._groups = GroupStore(store.db)

    def register(self, info: NodeInfo) -> None:
        self._info = info

    def unregister(self, node: str) -> None:
        return None

    def heartbeat(self, facts: dict[str, Any]) -> bool:
        first = not self._facts
        self._facts = facts
        return first

    def members(self) -> list[Member]:
        return [Member(self._info, True, self.is_cordoned(self.node), self._facts)]

    def reserve(self, name: str, node: str, quarantine: timedelta | None) -> Reservation:
        return Reservation(name, node, None)

    def adopt(self, name: str, node: str, instance_id: int) -> None:
        return None

    def release(self, name: str, instance_id: int | None, retire: bool) -> None:
        return None

    def move(self, name: str, instance_id: int, node: str) -> None:
        return None

    def publish(self, node: str, instances: list[PublishedInstance], complete: bool) -> None:
        return None

    def withdraw(self, node: str, name: str) -> None:
        return None

    def instances(self, node: str | None = None) -> list[PublishedInstance]:
        if node is not None and node != self.node:
            return []
        return [published(rec) for rec in self.store.list_instances()]

    def create_group(self, name: str, rule: Rule) -> Group:
        return self._groups.create(name, rule)

    def group(self, name: str) -> Group:
        return self._groups.get(name)

    def groups(self) -> list[Group]:
        return self._groups.list()

    def delete_group(self, name: str) -> None:
        self._groups.delete(name)

    def join_group(self, name: str, instance: str, node: str,
                   source: str | None = None) -> Group:
        return self._groups.join(name, instance, node, source)

    def leave_groups(self, instance: str) -> None:
        self._groups.leave(instance)

    def group_of(self, instance: str) -> Group | None:
        return self._groups.group_of(instance)

    def publish_templates(self, node: str, templates: list[PublishedTemplate],
                          complete: bool) -> None:
        return None

    def withdraw_template(self, node: str, name: str) -> None:
        return None

    def templates(self, name: str | None = None) -> list[PublishedTemplate]:
        return []  # one host: its templates are its template store's

    def set_cordoned(self, node: str, cordoned: bool) -> None:
        if cordoned:
            self._cordon_file.write_text("cordoned\n")
        else:
            self._cordon_file.unlink(missing_ok=True)

    def is_cordoned(self, node: str) -> bool:
        return node == self.node and self._cordon_file.exists()

    def leader(self) -> str | None:
        return self.node

    def secret(self) -> str | None:
        return None

    def locate(self, ref: str) -> str | None:
        return None

    def node_info(self, node: str) -> NodeInfo | None:
        return self._info if node == self.node else None

    def close(self) -> None:
        return None
