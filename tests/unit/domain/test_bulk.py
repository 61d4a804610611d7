"""Bulk: brace expansion, --count names, result aggregation, exit codes."""

from __future__ import annotations

import pytest

from corral.domain.bulk import (
    MAX_ITEMS,
    ItemOutcome,
    ItemStatus,
    check_parallel,
    exit_code,
    expand_braces,
    expand_names,
    next_number,
    numbered,
    summarize,
)
from corral.domain.errors import InvalidInput


def test_brace_ranges_as_bash_expands_them() -> None:
    assert expand_braces("web-{1..3}") == ["web-1", "web-2", "web-3"]
    assert expand_braces("web-{3..1}") == ["web-3", "web-2", "web-1"]
    assert expand_braces("n{08..10}") == ["n08", "n09", "n10"]
    assert expand_braces("n{1..7..3}") == ["n1", "n4", "n7"]
    assert expand_braces("{a,b}-{1..2}") == ["a-1", "a-2", "b-1", "b-2"]
    assert expand_braces("{db,web}1") == ["db1", "web1"]
    assert expand_braces("plain") == ["plain"]
    assert len(expand_braces("web-{1..100}")) == 100


@pytest.mark.parametrize("pattern", ["web-{1..3", "web-1..3}", "web-{x}", "web-{1..5..0}",
                                     "web-{{1..2}}", f"w{{1..{MAX_ITEMS + 1}}}",
                                     "{1..40}{1..40}"])
def test_bad_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(InvalidInput):
        expand_braces(pattern)


def test_expand_names_keeps_order_and_drops_repeats() -> None:
    assert expand_names(["b", "a-{1..2}", "b", "a-1"]) == ["b", "a-1", "a-2"]
    assert expand_names([]) == []


def test_numbered() -> None:
    assert numbered("web", 3) == ["web-1", "web-2", "web-3"]
    assert numbered("n{n}x", 2, first=10) == ["n10x", "n11x"]
    for bad in (0, MAX_ITEMS + 1):
        with pytest.raises(InvalidInput, match="--count"):
            numbered("web", bad)


def test_next_number_follows_the_highest_taken() -> None:
    assert next_number("web", []) == 1
    assert next_number("web", ["web-1", "web-7", "web-x", "web-", "webby-9", "db-3"]) == 8
    assert next_number("n{n}x", ["n4x", "n12x", "n5y"]) == 13
    with pytest.raises(InvalidInput, match="--first"):
        numbered("web", 2, first=-1)


def test_summary_and_exit_code() -> None:
    outcomes = [ItemOutcome("a", ItemStatus.OK), ItemOutcome("b", ItemStatus.OK),
                ItemOutcome("c", ItemStatus.SKIPPED, "already running")]
    summary = summarize(outcomes)
    assert (summary.total, summary.ok, summary.failed, summary.skipped) == (3, 2, 0, 1)
    assert str(summary) == "2 ok, 1 skipped of 3"
    assert exit_code(summary) == 0
    failed = summarize([*outcomes, ItemOutcome("d", ItemStatus.FAILED, "boom")])
    assert str(failed) == "2 ok, 1 failed, 1 skipped of 4"
    assert exit_code(failed) == 1
    assert str(summarize([])) == "0 ok of 0"


def test_parallel_bounds() -> None:
    assert check_parallel(4) == 4
    for bad in (0, 65):
        with pytest.raises(InvalidInput, match="--parallel"):
            check_parallel(bad)
