"""Placement groups: a hard rule on which member the instances of a group may live.

* anti-affinity: never two of the group on one member;
* affinity: all on one member (the one the first went to).

The functions here are pure: they take a group's live members (instance -> member) and say
whether one instance may be on a member, and why not. The stores keep the groups (etcd in
a cluster, SQLite on one host) and call ``refusal`` inside their transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from corral.domain.errors import Conflict, InvalidInput
from corral.domain.names import validate_name


class Rule(StrEnum):
    AFFINITY = "affinity"
    ANTI_AFFINITY = "anti-affinity"

    @classmethod
    def parse(cls, value: str) -> Rule:
        try:
            return cls(value.lower().replace("_", "-"))
        except ValueError:
            raise InvalidInput(f"unknown placement rule '{value}': affinity or "
                               "anti-affinity") from None


class GroupRefused(Conflict):
    """A member would break a placement group's rule."""

    code = "group_rule"


@dataclass(frozen=True)
class Group:
    name: str
    rule: Rule
    members: dict[str, str] = field(default_factory=dict)
    """Its live instances: instance name -> the member it is on (or being created on)."""
    created_at: str = ""

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "rule": self.rule.value, "created_at": self.created_at,
                "members": [{"instance": i, "node": n} for i, n in sorted(self.members.items())]}


def check_group_name(name: str) -> str:
    return validate_name(name, "placement group")


def refusal(group: Group, instance: str, node: str, source: str | None = None) -> str | None:
    """Why ``instance`` may not be on ``node`` under ``group``'s rule (None: it may).

    ``source``: the instance moves from there together with the rest of an affinity group
    (a bulk migration or an evacuation): others still on ``source`` will follow it."""
    others = {i: n for i, n in group.members.items() if i != instance}
    if group.rule is Rule.ANTI_AFFINITY:
        there = sorted(i for i, n in others.items() if n == node)
        if there:
            return (f"placement group '{group.name}' is anti-affinity: member '{node}' "
                    f"already holds {', '.join(there)}")
        return None
    elsewhere = sorted({n for n in others.values() if n != node and n != source})
    if elsewhere:
        return (f"placement group '{group.name}' is affinity: its instances are on "
                f"'{elsewhere[0]}', not '{node}'")
    return None


def allowed(group: Group, instance: str, nodes: list[str],
            source: str | None = None) -> list[str]:
    """``nodes`` (in their order) where ``instance`` may be under ``group``."""
    return [n for n in nodes if refusal(group, instance, n, source) is None]


def unplaceable(group: Group, instance: str) -> str:
    """The message of a create no member can take because of ``group``."""
    if group.rule is Rule.ANTI_AFFINITY:
        taken = sorted(set(group.members.values()))
        return (f"'{instance}' cannot be placed: placement group '{group.name}' is "
                "anti-affinity (one instance per member) and every member that could take "
                f"it already holds one ({', '.join(taken)})")
    where = sorted(set(group.members.values()))
    return (f"'{instance}' cannot be placed: placement group '{group.name}' is affinity "
            f"(all on one member) and its member {', '.join(where)} cannot take it "
            "(offline, cordoned, unable to run it or without room)")
