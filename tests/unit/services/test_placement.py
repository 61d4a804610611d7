"""Placement's choice (pure ``candidates``) with required and preferred features, and the
placement-group path of a create on a single host (a real SQLite group store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from corral.cluster.local import LocalClusterStore
from corral.cluster.store import Member, NodeInfo
from corral.domain.errors import InvalidInput, NotFound, Unsupported
from corral.domain.groups import GroupRefused, Rule
from corral.domain.users import Caller, Role
from corral.services.forwarding import Forwarder
from corral.services.placement import Ask, Placer, candidates
from corral.state.database import Database
from corral.state.store import OperationRecord, StateStore

ROOM = {"cpu": {"max_ratio": None}, "memory": {"max_ratio": None}}


def member(node: str, criu: bool, instances: int = 0, kinds: tuple[str, ...] = ("ct", "vm"),
           online: bool = True, cordoned: bool = False) -> Member:
    facts: dict[str, Any] = {"capacity": ROOM, "instances": instances,
                             "features": {"criu": criu, "vm": "tcg", "kinds": list(kinds)}}
    return Member(NodeInfo(node, None, None), online, cordoned, facts)


def test_required_feature_filters_members() -> None:
    ms = [member("a", False), member("b", True, instances=5), member("c", True, instances=1)]
    assert candidates(ms, Ask("ct", 0, 0), {}) == ["a", "c", "b"]
    assert candidates(ms, Ask("ct", 0, 0, requires=("criu",)), {}) == ["c", "b"]
    assert candidates(ms, Ask("ct", 0, 0, requires=("kvm",)), {}) == []
    assert candidates([member("a", True, kinds=("ct",))], Ask("vm", 0, 0), {}) == []


def test_preferred_feature_goes_first_but_does_not_exclude() -> None:
    ms = [member("a", False), member("b", True, instances=9)]
    assert candidates(ms, Ask("ct", 0, 0, prefer=("criu",)), {}) == ["b", "a"]
    assert candidates([member("a", False)], Ask("ct", 0, 0, prefer=("criu",)), {}) == ["a"]


def test_ask_of_a_create_body() -> None:
    ask = Ask.of({"type": "ct", "cpus": "2", "memory": "64M", "require": ["CRIU"]})
    assert (ask.cpus, ask.memory, ask.requires) == (2, 64 << 20, ("criu",))
    with pytest.raises(InvalidInput, match="unknown required feature 'gpu'"):
        Ask.of({"type": "ct", "require": ["gpu"]})


@pytest.fixture
def placer(tmp_path: Path) -> tuple[Placer, LocalClusterStore]:
    store = LocalClusterStore(StateStore(Database.open(tmp_path / "c.db")), "n", tmp_path)
    p = Placer("n", store.members, Forwarder("n", lambda: store, lambda _r: True,
                                              lambda _n: None), lambda: False)
    p.store = lambda: store
    p.own_features = lambda: {"criu": False}
    return p, store


def test_single_host_group_create_takes_and_gives_back_its_place(
        placer: tuple[Placer, LocalClusterStore]) -> None:
    p, store = placer
    admin = Caller("root", Role.ADMIN)
    store.create_group("db", Rule.ANTI_AFFINITY)
    made: list[str] = []

    def here() -> OperationRecord:
        made.append("x")
        raise NotFound("no template 'nope'")  # the create itself fails

    with pytest.raises(NotFound, match="no template"):
        p.create({"name": "db1", "type": "ct", "group": "db"}, admin, here)
    assert made == ["x"] and store.group("db").members == {}  # its place given back
    store.join_group("db", "db1", "n")
    with pytest.raises(GroupRefused, match="anti-affinity: member 'n' already holds db1"):
        p.create({"name": "db2", "type": "ct", "group": "db"}, admin, here)
    assert made == ["x"]  # refused before anything was made
    with pytest.raises(NotFound, match="no placement group 'web'"):
        p.create({"name": "w1", "type": "ct", "group": "web"}, admin, here)
    with pytest.raises(Unsupported, match="lacks criu"):
        p.create({"name": "c1", "type": "ct", "require": ["criu"]}, admin, here)
