"""Labels and selectors: parsing, validation, matching."""

from __future__ import annotations

import pytest

from corral.domain.errors import InvalidInput
from corral.domain.labels import Op, Term, check_labels, parse_assignments, parse_selector


def test_selector_terms_and_matching() -> None:
    sel = parse_selector("role=web, tier!=db,backup,!legacy")
    assert sel.terms == (Term("role", Op.EQ, "web"), Term("tier", Op.NE, "db"),
                         Term("backup", Op.EXISTS), Term("legacy", Op.ABSENT))
    assert str(sel) == "role=web,tier!=db,backup,!legacy"
    assert sel.matches({"role": "web", "backup": ""})
    assert sel.matches({"role": "web", "backup": "daily", "tier": "front"})
    assert not sel.matches({"role": "web", "backup": "x", "tier": "db"})  # k!=v
    assert not sel.matches({"role": "web"})  # backup must exist
    assert not sel.matches({"role": "web", "backup": "x", "legacy": "1"})  # !legacy
    assert not sel.matches({"role": "db", "backup": "x"})


def test_not_equal_holds_when_the_label_is_absent() -> None:
    assert parse_selector("tier!=db").matches({})


def test_double_equals_reads_as_equals_and_empty_value_is_allowed() -> None:
    assert parse_selector("role==web").matches({"role": "web"})
    assert parse_selector("role=").matches({"role": ""})
    assert not parse_selector("role=").matches({})


@pytest.mark.parametrize("text", ["", "role=web,", ",role=web", "Role=web", "role=we b",
                                  "=web", "!", "role=-x", "a" * 64])
def test_malformed_selectors_are_refused_with_a_message(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_selector(text)
    assert refused.value.message


def test_assignments() -> None:
    assert parse_assignments(["role=web", "tier = 1"]) == {"role": "web", "tier": "1"}
    assert parse_assignments(["example.com/team=ops"]) == {"example.com/team": "ops"}
    with pytest.raises(InvalidInput, match="not key=value"):
        parse_assignments(["role"])
    with pytest.raises(InvalidInput, match="at least one"):
        parse_assignments([])
    with pytest.raises(InvalidInput, match="label value"):
        parse_assignments(["role=web!"])


def test_at_most_64_labels() -> None:
    check_labels({f"k{i}": "v" for i in range(64)})
    with pytest.raises(InvalidInput, match="at most 64"):
        check_labels({f"k{i}": "v" for i in range(65)})
