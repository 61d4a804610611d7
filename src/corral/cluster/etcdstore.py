"""The cluster store in etcd. Keys (under ``/corral/``):

``cluster``                  the cluster's birth record (``init`` refuses a used store)
``nodes/<node>``             how a member is reached (``NodeInfo``), until it leaves
``members/<node>``           its facts, bound to its lease: gone ``ttl`` s after it stops renewing
``names/<name>``             ``{"node", "id"}``: the name is taken cluster-wide
``ids/<id>``                 ``{"name", "node"}`` in use, or ``{"retired_at"}`` after a delete
``instances/<node>/<name>``  a published instance record
``templates/<name>/<node>`` a template ``node`` holds (``PublishedTemplate``: its content
                             digest, size, kinds), until it deletes it or leaves
``cordon/<node>``            present: no new instances there
``leader``                   the member holding the leader lease (bound to its member lease)
``secret``                   the members' shared token for forwarded requests (made at init)
``groups/<group>``           a placement group: ``{"rule", "created_at", "members": {instance:
                             {"node", "at"}}}``; a member is live while its name is held
                             (its node: the name's), or for ``GRACE`` after it was written

Every reservation is one transaction comparing what was read (compare-and-swap): two hosts
creating the same name, or taking the same free id, cannot both succeed.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from corral.cluster.etcd import (
    EtcdClient,
    KeyValue,
    absent,
    delete_op,
    put_op,
    unchanged,
)
from corral.cluster.store import (
    Member,
    NodeInfo,
    PublishedInstance,
    PublishedTemplate,
    Reservation,
)
from corral.domain.errors import Busy, Conflict, NotFound
from corral.domain.groups import Group, GroupRefused, Rule, check_group_name, refusal
from corral.domain.ids import IdPolicy, choose_id

ROOT = "/corral/"
GRACE = timedelta(minutes=2)
"""How long a group member whose name is not held (yet) still counts: longer than a create
takes to reserve its name on the member placement sent it to."""


def _json(kv: KeyValue) -> dict[str, Any]:
    try:
        data = json.loads(kv.value)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _stamp() -> str:
    return _now().isoformat() + "Z"


class EtcdClusterStore:
    clustered = True

    def __init__(self, client: EtcdClient, node: str, ttl: int = 10) -> None:
        self.client = client
        self.node = node
        self.ttl = ttl
        self._lease: int | None = None
        self._lock = threading.Lock()

    @staticmethod
    def key(*parts: str | int) -> str:
        return ROOT + "/".join(str(p) for p in parts)

    # Birth -------------------------------------------------------------------------------
    def create_cluster(self, by: str) -> bool:
        """Mark the store as this cluster's; False if another cluster already uses it."""
        record = _dump({"created_at": _now().isoformat() + "Z", "by": by})
        return self.client.txn([absent(self.key("cluster"))],
                               [put_op(self.key("cluster"), record),
                                put_op(self.key("secret"), secrets.token_urlsafe(32))])

    def secret(self) -> str | None:
        kv = self.client.get(self.key("secret"))
        return None if kv is None else kv.value.decode()

    def locate(self, ref: str) -> str | None:
        """The member holding the instance named (or numbered) ``ref``."""
        if ref.isdigit():
            kv = self.client.get(self.key("ids", int(ref)), serializable=True)
        else:
            kv = self.client.get(self.key("names", ref), serializable=True)
        node = None if kv is None else _json(kv).get("node")
        return None if node is None else str(node)

    def exists(self) -> bool:
        return self.client.get(self.key("cluster")) is not None

    def destroy_cluster(self) -> None:
        self.client.delete(ROOT, prefix=True)

    # Members -----------------------------------------------------------------------------
    def register(self, info: NodeInfo) -> None:
        self.client.put(self.key("nodes", info.node), _dump({
            "url": info.url, "fingerprint": info.fingerprint, "cert_pem": info.cert_pem,
            "joined_at": info.joined_at}))

    def node_info(self, node: str) -> NodeInfo | None:
        kv = self.client.get(self.key("nodes", node))
        return None if kv is None else _node_info(node, _json(kv))

    def unregister(self, node: str) -> None:
        for kind in ("names", "ids"):
            for kv in self.client.range(self.key(kind) + "/", prefix=True):
                if _json(kv).get("node") == node:
                    self.client.txn([unchanged(kv.key, kv.mod_revision)], [delete_op(kv.key)])
        self.client.delete(self.key("instances", node) + "/", prefix=True)
        for template in self.templates():
            if template.node == node:
                self.withdraw_template(node, template.name)
        for key in (self.key("cordon", node), self.key("members", node),
                    self.key("nodes", node)):
            self.client.delete(key)

    def heartbeat(self, facts: dict[str, Any]) -> bool:
        with self._lock:
            reborn = False
            if self._lease is None or self.client.keepalive(self._lease) <= 0:
                self._lease = self.client.grant(self.ttl)
                reborn = True
            self.client.put(self.key("members", self.node), _dump(facts), lease=self._lease)
            return reborn

    def members(self) -> list[Member]:
        nodes = self.client.range(self.key("nodes") + "/", prefix=True, serializable=True)
        facts = {kv.key.rsplit("/", 1)[1]: _json(kv) for kv in self.client.range(
            self.key("members") + "/", prefix=True, serializable=True)}
        cordoned = {kv.key.rsplit("/", 1)[1] for kv in self.client.range(
            self.key("cordon") + "/", prefix=True, serializable=True)}
        found = []
        for kv in nodes:
            node = kv.key.rsplit("/", 1)[1]
            found.append(Member(_node_info(node, _json(kv)), node in facts, node in cordoned,
                                facts.get(node, {})))
        return sorted(found, key=lambda m: m.node)

    # Names and ids -----------------------------------------------------------------------
    def reserve(self, name: str, node: str, quarantine: timedelta | None) -> Reservation:
        name_key = self.key("names", name)
        for _attempt in range(50):
            taken = self.client.get(name_key)
            if taken is not None:
                raise Conflict(_taken(name, _json(taken)))
            in_use, retired, revisions = self._ids()
            chosen = choose_id(in_use, retired, IdPolicy(quarantine), _now())
            id_key = self.key("ids", chosen)
            if self.client.txn(
                [absent(name_key), unchanged(id_key, revisions.get(chosen, 0))],
                [put_op(name_key, _dump({"node": node, "id": chosen, "at": _stamp()})),
                 put_op(id_key, _dump({"name": name, "node": node}))],
            ):
                return Reservation(name, node, chosen)
        raise Busy(f"could not reserve '{name}': too many concurrent creates, try again")

    def _ids(self) -> tuple[set[int], dict[int, datetime], dict[int, int]]:
        in_use: set[int] = set()
        retired: dict[int, datetime] = {}
        revisions: dict[int, int] = {}
        for kv in self.client.range(self.key("ids") + "/", prefix=True):
            number = int(kv.key.rsplit("/", 1)[1])
            revisions[number] = kv.mod_revision
            data = _json(kv)
            if "retired_at" in data:
                retired[number] = datetime.fromisoformat(str(data["retired_at"]).rstrip("Z"))
            else:
                in_use.add(number)
        return in_use, retired, revisions

    def retire_ids(self, retired: dict[int, datetime]) -> None:
        """Record ids deleted on a host before it entered the cluster as retired (at the time
        they were deleted), so their quarantine holds cluster-wide; ids etcd already knows,
        in use or retired, are left as they are."""
        for instance_id, at in sorted(retired.items()):
            id_key = self.key("ids", instance_id)
            self.client.txn([absent(id_key)], [put_op(id_key, _dump(
                {"retired_at": at.replace(tzinfo=None).isoformat() + "Z"}))])

    def adopt(self, name: str, node: str, instance_id: int) -> None:
        name_key, id_key = self.key("names", name), self.key("ids", instance_id)
        held_name, held_id = self.client.get(name_key), self.client.get(id_key)
        if held_name is not None:
            data = _json(held_name)
            if (data.get("node"), data.get("id")) != (node, instance_id):
                raise Conflict(_taken(name, data))
            if held_id is not None and _json(held_id) == {"name": name, "node": node}:
                return  # already held: nothing to write
        if held_id is not None:
            data = _json(held_id)
            if "retired_at" not in data and data != {"name": name, "node": node}:
                raise Conflict(f"id {instance_id} of '{name}' is held by '{data.get('name')}' "
                               f"on member '{data.get('node')}'")
        if not self.client.txn(
            [unchanged(name_key, held_name.mod_revision if held_name else 0),
             unchanged(id_key, held_id.mod_revision if held_id else 0)],
            [put_op(name_key, _dump({"node": node, "id": instance_id, "at": _stamp()})),
             put_op(id_key, _dump({"name": name, "node": node}))],
        ):
            raise Conflict(f"'{name}' (id {instance_id}) was taken by another member meanwhile")

    def held(self, node: str) -> dict[str, tuple[int, datetime | None]]:
        """The names ``node`` holds: each one's id and when it was reserved."""
        found: dict[str, tuple[int, datetime | None]] = {}
        for kv in self.client.range(self.key("names") + "/", prefix=True):
            data = _json(kv)
            if data.get("node") == node:
                at = data.get("at")
                found[kv.key.rsplit("/", 1)[1]] = (
                    int(data.get("id", 0)),
                    datetime.fromisoformat(str(at).rstrip("Z")) if at else None)
        return found

    def move(self, name: str, instance_id: int, node: str) -> None:
        """``name`` now lives on ``node`` with ``instance_id`` (a migration's commit); an
        id it had before is retired."""
        name_key = self.key("names", name)
        before = self.client.get(name_key)
        ops = [put_op(name_key, _dump({"node": node, "id": instance_id, "at": _stamp()})),
               put_op(self.key("ids", instance_id), _dump({"name": name, "node": node}))]
        old_id = None if before is None else _json(before).get("id")
        if old_id is not None and int(old_id) != instance_id:
            ops.append(put_op(self.key("ids", int(old_id)), _dump({"retired_at": _stamp()})))
        self.client.txn([], ops)

    def release(self, name: str, instance_id: int | None, retire: bool) -> None:
        ops = [delete_op(self.key("names", name))]
        if instance_id is not None:
            id_key = self.key("ids", instance_id)
            ops.append(put_op(id_key, _dump({"retired_at": _stamp()}))
                       if retire else delete_op(id_key))
        self.client.txn([], ops)

    # Published instances -----------------------------------------------------------------
    def publish(self, node: str, instances: list[PublishedInstance], complete: bool) -> None:
        ops = [put_op(self.key("instances", node, i.name), _dump(i.to_json()))
               for i in instances]
        if complete:
            keep = {i.name for i in instances}
            for kv in self.client.range(self.key("instances", node) + "/", prefix=True):
                if kv.key.rsplit("/", 1)[1] not in keep:
                    ops.append(delete_op(kv.key))
        for start in range(0, len(ops), 100):  # etcd's default limit: 128 ops per txn
            self.client.txn([], ops[start:start + 100])

    def withdraw(self, node: str, name: str) -> None:
        self.client.delete(self.key("instances", node, name))

    def instances(self, node: str | None = None) -> list[PublishedInstance]:
        prefix = self.key("instances") + "/" + (f"{node}/" if node else "")
        return [PublishedInstance.from_json(_json(kv)) for kv in
                self.client.range(prefix, prefix=True, serializable=True)]

    # Placement groups --------------------------------------------------------------------
    def create_group(self, name: str, rule: Rule) -> Group:
        check_group_name(name)
        stamp = _stamp()
        if not self.client.txn([absent(self.key("groups", name))], [put_op(
                self.key("groups", name),
                _dump({"rule": rule.value, "created_at": stamp, "members": {}}))]):
            raise Conflict(f"placement group '{name}' already exists")
        return Group(name, rule, {}, stamp)

    def _read_group(self, name: str) -> tuple[KeyValue, dict[str, Any], Group]:
        kv = self.client.get(self.key("groups", name))
        if kv is None:
            raise NotFound(f"no placement group '{name}' (`corral group list`)")
        data = _json(kv)
        cutoff = _now() - GRACE
        live: dict[str, str] = {}
        raw: dict[str, Any] = {}
        for instance, entry in dict(data.get("members") or {}).items():
            node = self.locate(instance)
            at = datetime.fromisoformat(str(entry.get("at", "")).rstrip("Z") or "1970-01-01")
            if node is None and at >= cutoff:
                node = str(entry.get("node"))
            if node is not None:
                live[instance] = node
                raw[instance] = entry
        group = Group(name, Rule(str(data.get("rule"))), live, str(data.get("created_at", "")))
        return kv, raw, group

    def group(self, name: str) -> Group:
        return self._read_group(name)[2]

    def groups(self) -> list[Group]:
        names = [kv.key.rsplit("/", 1)[1] for kv in
                 self.client.range(self.key("groups") + "/", prefix=True)]
        return [self.group(n) for n in sorted(names)]

    def delete_group(self, name: str) -> None:
        kv, _raw, group = self._read_group(name)
        if group.members:
            raise Conflict(f"placement group '{name}' still holds "
                           f"{', '.join(sorted(group.members))}: delete them first")
        if not self.client.txn([unchanged(kv.key, kv.mod_revision)], [delete_op(kv.key)]):
            raise Busy(f"placement group '{name}' changed meanwhile: try again")

    def join_group(self, name: str, instance: str, node: str,
                   source: str | None = None) -> Group:
        """Put ``instance`` (on ``node``) in the group: the rule is checked against the
        members read and the write is conditional on the group not having changed since
        (compare-and-swap), so two creates racing for one member cannot both get it."""
        for _attempt in range(50):
            kv, raw, group = self._read_group(name)
            held = self.group_of(instance)
            if held is not None and held.name != name:
                raise Conflict(f"'{instance}' is in placement group '{held.name}' already")
            why = refusal(group, instance, node, source)
            if why is not None:
                raise GroupRefused(why)
            data = _json(kv)
            data["members"] = {**raw, instance: {"node": node, "at": _stamp()}}
            if self.client.txn([unchanged(kv.key, kv.mod_revision)],
                               [put_op(kv.key, _dump(data))]):
                return Group(name, group.rule, {**group.members, instance: node},
                             group.created_at)
        raise Busy(f"placement group '{name}': too many concurrent changes, try again")

    def leave_groups(self, instance: str) -> None:
        for kv in self.client.range(self.key("groups") + "/", prefix=True):
            for _attempt in range(50):
                data = _json(kv)
                members = dict(data.get("members") or {})
                if members.pop(instance, None) is None:
                    break
                data["members"] = members
                if self.client.txn([unchanged(kv.key, kv.mod_revision)],
                                   [put_op(kv.key, _dump(data))]):
                    break
                fresh = self.client.get(kv.key)
                if fresh is None:
                    break
                kv = fresh

    def group_of(self, instance: str) -> Group | None:
        for kv in self.client.range(self.key("groups") + "/", prefix=True):
            if instance in dict(_json(kv).get("members") or {}):
                return self.group(kv.key.rsplit("/", 1)[1])
        return None

    # Templates ---------------------------------------------------------------------------
    def publish_templates(self, node: str, templates: list[PublishedTemplate],
                          complete: bool) -> None:
        ops = [put_op(self.key("templates", t.name, node), _dump(t.to_json()))
               for t in templates]
        if complete:
            keep = {t.name for t in templates}
            ops += [delete_op(self.key("templates", t.name, node)) for t in self.templates()
                    if t.node == node and t.name not in keep]
        for start in range(0, len(ops), 100):
            self.client.txn([], ops[start:start + 100])

    def withdraw_template(self, node: str, name: str) -> None:
        self.client.delete(self.key("templates", name, node))

    def templates(self, name: str | None = None) -> list[PublishedTemplate]:
        prefix = self.key("templates") + "/" + (f"{name}/" if name else "")
        found = []
        for kv in self.client.range(prefix, prefix=True, serializable=True):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                found.append(PublishedTemplate.from_json(_json(kv)))
        return found

    # Cordon, leader ----------------------------------------------------------------------
    def set_cordoned(self, node: str, cordoned: bool) -> None:
        if cordoned:
            self.client.put(self.key("cordon", node), "1")
        else:
            self.client.delete(self.key("cordon", node))

    def is_cordoned(self, node: str) -> bool:
        return self.client.get(self.key("cordon", node), serializable=True) is not None

    def leader(self) -> str | None:
        key = self.key("leader")
        held = self.client.get(key)
        if held is None and self._lease is not None:
            self.client.txn([absent(key)], [put_op(key, self.node, lease=self._lease)])
            held = self.client.get(key)
        return None if held is None else held.value.decode()

    def close(self) -> None:
        with self._lock:
            if self._lease is not None:
                with contextlib.suppress(Exception):  # unreachable: it expires on its own
                    self.client.revoke(self._lease)
                self._lease = None
        self.client.close()


def _node_info(node: str, data: dict[str, Any]) -> NodeInfo:
    return NodeInfo(node, data.get("url"), data.get("fingerprint"), data.get("cert_pem"),
                    str(data.get("joined_at", "")))


def _taken(name: str, holder: dict[str, Any]) -> str:
    return f"an instance named '{name}' already exists (on member '{holder.get('node')}')"
