"""`corral group create|list|show|delete`: placement groups, kept by the cluster store
(etcd in a cluster, the database on one host); placement applies them
(services/placement.py)."""

from __future__ import annotations

from collections.abc import Callable

from corral.cluster.store import ClusterStore
from corral.domain.groups import Group, Rule


class GroupService:
    def __init__(self, store: Callable[[], ClusterStore]) -> None:
        self.store = store

    def create(self, name: str, rule: str) -> Group:
        return self.store().create_group(name, Rule.parse(rule))

    def list(self) -> list[Group]:
        return self.store().groups()

    def get(self, name: str) -> Group:
        return self.store().group(name)

    def delete(self, name: str) -> None:
        self.store().delete_group(name)

    def of(self, instance: str) -> Group | None:
        return self.store().group_of(instance)
