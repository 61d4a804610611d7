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
from corral.domain.instance import Kind
from corral.domain.resources import Resources
from corral.domain.users import Caller, Role
from corral.services.forwarding import Forwarder
from corral.services.placement import Ask, NoRoom, Placer, candidates
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


def test_pick_for_a_moving_instance_keeps_its_group(tmp_path: Path) -> None:
    """Evacuating member a (single-host group store, three members' facts): anti-affinity
    skips the member holding another; an affinity group may go anywhere while the rest is
    still on a, then must follow the first; CTs go to CRIU members first."""
    state = StateStore(Database.open(tmp_path / "c.db"))
    store = LocalClusterStore(state, "a", tmp_path)
    ms = [member("a", True), member("b", False), member("c", False, instances=3),
          member("d", True, instances=5)]
    p = Placer("a", lambda: ms, Forwarder("a", lambda: store, lambda _r: True,
                                         lambda _n: None), lambda: True)
    p.store = lambda: store
    store.create_group("db", Rule.ANTI_AFFINITY)
    store.create_group("web", Rule.AFFINITY)
    for name, node, group in (("db1", "a", "db"), ("db2", "b", "db"),
                              ("w1", "a", "web"), ("w2", "a", "web")):
        state.insert_instance(name, Kind.VM, "tiny", Resources(1, 1 << 20, 1 << 20), False,
                              node, 101)
        store.join_group(group, name, node)
    vm = Ask("vm", 0, 0)
    assert p.pick(vm, "a", "db1") == "c"  # b holds db2; c has fewer instances than d
    first = p.pick(vm, "a", "w1")
    assert first in ("b", "c", "d")
    store.create_group("app", Rule.AFFINITY)
    state.insert_instance("x2", Kind.VM, "tiny", Resources(1, 1 << 20, 1 << 20), False,
                          "a", 101)
    store.join_group("app", "x2", "a")
    with pytest.raises(GroupRefused):
        store.join_group("app", "x1", "c")
    store.join_group("app", "x1", "c", source="a")  # moved first (its entry says c)
    assert p.pick(vm, "a", "x2") == "c"  # follows the first
    assert p.pick(Ask("ct", 0, 0, prefer=("criu",)), "a") == "d"  # CRIU first
    store.join_group("db", "db3", "c")  # now every other member but d holds one
    assert p.pick(vm, "a", "db1") == "d"
    store.join_group("db", "db4", "d")
    with pytest.raises(NoRoom, match="placement group"):
        p.pick(vm, "a", "db1")


GIB = 1024**3


def sized(node: str, instances: int, free_memory: int, online: bool = True) -> Member:
    capacity = {"cpu": {"max_ratio": 4, "physical": 8, "allocated": 0},
                "memory": {"max_ratio": 1, "physical": 64 * GIB,
                           "allocated": 64 * GIB - free_memory}}
    facts = {"capacity": capacity, "instances": instances,
             "features": {"kinds": ["ct", "vm"]}}
    return Member(NodeInfo(node, None, None), online, False, facts)


def test_holding_the_template_breaks_ties_between_equally_loaded_members() -> None:
    ms = [sized("a", 3, 20 * GIB), sized("b", 3, 10 * GIB), sized("c", 2, 1 * GIB)]
    ask = Ask("ct", 1, GIB, template="debian-12")
    assert candidates(ms, ask, {}) == ["c", "a", "b"]
    # b holds the template: it goes before a (same count), never before the less loaded c
    assert candidates(ms, ask, {}, frozenset({"b"})) == ["c", "b", "a"]


def test_a_holder_without_room_or_offline_is_no_candidate() -> None:
    ms = [sized("a", 0, GIB // 2), sized("b", 0, 8 * GIB, online=False), sized("c", 5, 8 * GIB)]
    assert candidates(ms, Ask("ct", 1, GIB, template="t"), {}, frozenset({"a", "b"})) == ["c"]


def test_ask_reads_the_template_from_a_create_body() -> None:
    assert Ask.of({"type": "vm", "cpus": 2, "memory": "1G", "template": "tiny"}) \
        == Ask("vm", 2, GIB, template="tiny")
    assert Ask.of({"type": "ct"}).template is None
