"""How `corral migrate` says what it did: the path and why, then the downtime with its
breakdown in parentheses right after it."""

from __future__ import annotations

from corral.cli.migration import _result
from corral.domain.statuses import MigrationStatus
from corral.wire.migration import MigrationModel


def test_the_downtime_is_followed_by_its_breakdown_without_a_comma() -> None:
    model = MigrationModel(
        id="m1", direction="out", instance="ct1", instance_id=101, kind="ct", peer="b",
        path="checkpoint", status=MigrationStatus.SUCCESS, phase="done", operation=None,
        error=None, created_at="2026-12-06T16:00:00", updated_at="2026-12-06T16:00:01",
        details={"why": "checkpoint/restore", "downtime_ms": 462.6, "dump_ms": 134.2,
                 "send_ms": 132.6, "commit_ms": 243.8, "criu_dump_ms": 96.5,
                 "criu_restore_ms": 108.3, "total_ms": 990})
    said = _result(model)
    assert said.startswith("path: checkpoint — checkpoint/restore, downtime 462.6 ms (dump "
                           "134.2 ms, delta and files 132.6 ms, restore 243.8 ms; CRIU's own: "
                           "dump 96.5 ms, restore 108.3 ms), total 0.99 s"), said
