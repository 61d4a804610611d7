"""Placement groups of a host in no cluster, in its database (a cluster's are in etcd:
``cluster/etcdstore.py``). A member row is live while its instance exists, or for
``GRACE`` after it was written (the create placing it is still under way)."""

from __future__ import annotations

from datetime import timedelta

from corral.domain.errors import Conflict, NotFound
from corral.domain.groups import Group, GroupRefused, Rule, check_group_name, refusal
from corral.state.database import Database, from_sql_datetime, to_sql_datetime, utcnow

GRACE = timedelta(minutes=2)
"""How long a member whose instance does not exist (yet) still counts: longer than a
create takes to reserve its name."""

_LIVE = (
    "SELECT m.instance, COALESCE(i.node, m.node) FROM placement_group_members m "
    "LEFT JOIN instances i ON i.name = m.instance "
    "WHERE m.group_name = ? AND (i.id IS NOT NULL OR m.at >= ?)")


class GroupStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, name: str, rule: Rule) -> Group:
        check_group_name(name)
        now = utcnow()
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM placement_groups WHERE name = ?",
                            (name,)).fetchone():
                raise Conflict(f"placement group '{name}' already exists")
            conn.execute("INSERT INTO placement_groups (name, rule, created_at) "
                         "VALUES (?, ?, ?)", (name, rule.value, to_sql_datetime(now)))
        return Group(name, rule, {}, now.isoformat() + "Z")

    def get(self, name: str) -> Group:
        row = self.db.one("SELECT rule, created_at FROM placement_groups WHERE name = ?",
                          (name,))
        if row is None:
            raise NotFound(f"no placement group '{name}' (`corral group list`)")
        cutoff = to_sql_datetime(utcnow() - GRACE)
        members = {str(i): str(n) for i, n in self.db.all(_LIVE, (name, cutoff))}
        return Group(name, Rule(row[0]), members,
                     from_sql_datetime(row[1]).isoformat() + "Z")

    def list(self) -> list[Group]:
        return [self.get(name) for name in
                self.db.column("SELECT name FROM placement_groups ORDER BY name")]

    def delete(self, name: str) -> None:
        group = self.get(name)
        if group.members:
            raise Conflict(f"placement group '{name}' still holds "
                           f"{', '.join(sorted(group.members))}: delete them first")
        self.db.execute("DELETE FROM placement_groups WHERE name = ?", (name,))

    def join(self, name: str, instance: str, node: str, source: str | None = None) -> Group:
        """Put ``instance`` (on ``node``) in group ``name``, checking its rule in the same
        transaction as the write (GroupRefused); the group as it is then."""
        cutoff = to_sql_datetime(utcnow() - GRACE)
        with self.db.transaction() as conn:
            row = conn.execute("SELECT rule, created_at FROM placement_groups WHERE name = ?",
                               (name,)).fetchone()
            if row is None:
                raise NotFound(f"no placement group '{name}' (`corral group list`)")
            held = conn.execute("SELECT group_name FROM placement_group_members "
                                "WHERE instance = ?", (instance,)).fetchone()
            if held is not None and held[0] != name:
                raise Conflict(f"'{instance}' is in placement group '{held[0]}' already")
            members = {str(i): str(n) for i, n in conn.execute(_LIVE, (name, cutoff))}
            group = Group(name, Rule(row[0]), members, str(row[1]))
            why = refusal(group, instance, node, source)
            if why is not None:
                raise GroupRefused(why)
            conn.execute(
                "INSERT INTO placement_group_members (instance, group_name, node, at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(instance) DO UPDATE SET node = excluded.node,"
                " at = excluded.at", (instance, name, node, to_sql_datetime(utcnow())))
        return Group(name, group.rule, {**members, instance: node}, group.created_at)

    def leave(self, instance: str) -> None:
        self.db.execute("DELETE FROM placement_group_members WHERE instance = ?", (instance,))

    def group_of(self, instance: str) -> Group | None:
        row = self.db.one("SELECT group_name FROM placement_group_members WHERE instance = ?",
                          (instance,))
        return None if row is None else self.get(str(row[0]))
