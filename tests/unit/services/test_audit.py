"""The audit log's filters (services/audit.py) on a real SQLite database."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput
from corral.services.audit import AuditService, parse_since, result_of
from corral.state.auditstore import AuditEntry, AuditStore
from corral.state.database import Database

NOW = datetime(2026, 12, 6, 12, 0, 0)


def test_since_takes_a_time_or_a_span_ago() -> None:
    assert parse_since("30m", NOW) == NOW - timedelta(minutes=30)
    assert parse_since("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("2026-12-06T10:00:00", NOW) == datetime(2026, 12, 6, 10)
    assert parse_since("2026-12-06T11:00:00+01:00", NOW) == datetime(2026, 12, 6, 10)
    with pytest.raises(InvalidInput, match="30m, 2h"):
        parse_since("yesterday", NOW)


def test_results_by_status() -> None:
    assert [result_of(s) for s in (200, 202, 204, 400, 403, 404, 409, 500, 503)] == [
        "ok", "ok", "ok", "refused", "refused", "refused", "refused", "failed", "failed"]


def test_filters_combine_and_newest_come_first(tmp_path: Path) -> None:
    audit = AuditService(AuditStore(Database.open(tmp_path / "corral.db")))
    rows = [("alice", "web", "start_instance", 202, NOW - timedelta(hours=3)),
            ("alice", "db", "start_instance", 404, NOW - timedelta(hours=1)),
            ("bob", "web", "delete_instance", 202, NOW)]
    for user, instance, action, status, at in rows:
        audit.record(AuditEntry(at, user, "owner", None, "10.0.0.1:5000", "POST",
                                f"/api/v1/instances/{instance}", action, instance, status,
                                result_of(status)))
    assert [e.user for e in audit.query()] == ["bob", "alice", "alice"]
    assert [e.instance for e in audit.query(user="alice")] == ["db", "web"]
    assert [e.user for e in audit.query(instance="web", action="start_instance")] == ["alice"]
    assert [e.instance for e in audit.query(result="refused")] == ["db"]
    assert len(audit.query(since="2026-12-06T10:30:00")) == 2
    assert len(audit.query(limit=1)) == 1
    with pytest.raises(InvalidInput, match="ok, refused, failed"):
        audit.query(result="maybe")
