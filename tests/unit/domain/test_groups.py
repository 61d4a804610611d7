"""Placement group rules (pure): anti-affinity and affinity, moves of a whole set."""

from __future__ import annotations

import pytest

from corral.domain.errors import InvalidInput
from corral.domain.groups import Group, Rule, allowed, refusal, unplaceable


def test_rule_parse() -> None:
    assert Rule.parse("Anti_Affinity") is Rule.ANTI_AFFINITY
    assert Rule.parse("affinity") is Rule.AFFINITY
    with pytest.raises(InvalidInput, match="unknown placement rule 'near'"):
        Rule.parse("near")


def test_anti_affinity_never_two_on_one_member() -> None:
    g = Group("db", Rule.ANTI_AFFINITY, {"db1": "a", "db2": "b"})
    assert allowed(g, "db3", ["a", "b", "c"]) == ["c"]
    why = refusal(g, "db3", "a")
    assert why is not None and "'db'" in why and "anti-affinity" in why and "db1" in why
    assert refusal(g, "db1", "a") is None  # itself does not count
    assert refusal(g, "db1", "b") is not None  # moving onto db2's member
    assert "holds one (a, b)" in unplaceable(g, "db3")


def test_affinity_follows_the_first() -> None:
    empty = Group("web", Rule.AFFINITY)
    assert allowed(empty, "w1", ["a", "b"]) == ["a", "b"]  # the first goes anywhere
    g = Group("web", Rule.AFFINITY, {"w1": "b"})
    assert allowed(g, "w2", ["a", "b", "c"]) == ["b"]
    why = refusal(g, "w2", "a")
    assert why is not None and "affinity" in why and "'b'" in why
    assert refusal(Group("web", Rule.AFFINITY, {"w1": "b"}), "w1", "c") is None  # alone


def test_affinity_moved_as_a_set() -> None:
    """Evacuating member a: the first of the group may go anywhere (the rest follow it),
    the next must go where the first went; a lone migrate may not split the group."""
    g = Group("web", Rule.AFFINITY, {"w1": "a", "w2": "a"})
    assert allowed(g, "w1", ["b", "c"], source="a") == ["b", "c"]
    assert allowed(g, "w1", ["b", "c"]) == []  # not as part of a set: w2 stays on a
    moved = Group("web", Rule.AFFINITY, {"w1": "c", "w2": "a"})
    assert allowed(moved, "w2", ["b", "c"], source="a") == ["c"]
