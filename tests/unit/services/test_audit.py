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


def _entry(at: datetime, user: str = "alice") -> AuditEntry:
    return AuditEntry(at, user, "owner", None, "10.0.0.1:5000", "POST",
                      "/api/v1/instances/web/start", "start_instance", "web", 202, "ok")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_retention_prunes_by_age_with_the_clock_given(tmp_path: Path) -> None:
    clock = Clock(NOW)
    audit = AuditService(AuditStore(Database.open(tmp_path / "corral.db")),
                         retention=lambda: (timedelta(days=90), None), clock=clock)
    for days in (200, 91, 89, 1, 0):
        audit.record(_entry(NOW - timedelta(days=days)))
    assert audit.prune() == 2
    assert sorted((NOW - e.at).days for e in audit.query()) == [0, 1, 89]
    assert audit.prune() == 0  # nothing more is past it now
    clock.now = NOW + timedelta(days=2)  # two days on: the 89-day-old entry is 91 days old
    assert audit.prune() == 1
    assert sorted((NOW - e.at).days for e in audit.query()) == [0, 1]


def test_retention_keeps_the_newest_n_entries(tmp_path: Path) -> None:
    audit = AuditService(AuditStore(Database.open(tmp_path / "corral.db")),
                         retention=lambda: (None, 3), clock=lambda: NOW)
    for minutes in reversed(range(10)):  # oldest first, as they are recorded
        audit.record(_entry(NOW - timedelta(minutes=minutes), user=f"u{minutes}"))
    assert audit.prune() == 7
    assert [e.user for e in audit.query()] == ["u0", "u1", "u2"]
    assert audit.store.count() == 3


def test_no_limits_keep_everything(tmp_path: Path) -> None:
    audit = AuditService(AuditStore(Database.open(tmp_path / "corral.db")), clock=lambda: NOW)
    for days in (5000, 1):
        audit.record(_entry(NOW - timedelta(days=days)))
    assert audit.prune() == 0 and audit.store.count() == 2


def test_the_hourly_history_upkeep_runs_the_audit_retention(tmp_path: Path) -> None:
    """No thread of its own: the history sampler's hourly maintenance calls it."""
    from corral.services.history import HistorySampler
    from corral.state.historystore import HistoryStore

    db = Database.open(tmp_path / "corral.db")
    now = [NOW]
    audit = AuditService(AuditStore(db), retention=lambda: (timedelta(days=30), None),
                         clock=lambda: now[0])
    epoch = [float(int(NOW.timestamp()) // 3600 * 3600)]
    sampler = HistorySampler(HistoryStore(db), dict, clock=lambda: epoch[0])
    sampler.hourly.append(audit.prune)
    audit.record(_entry(NOW - timedelta(days=29, hours=23, minutes=30)))
    sampler.tick()  # the first tick of an hour: upkeep runs; the entry is not 30 days old
    assert audit.store.count() == 1
    now[0] += timedelta(hours=1)
    epoch[0] += 60
    sampler.tick()  # same hour: no upkeep
    assert audit.store.count() == 1
    epoch[0] += 3600
    sampler.tick()  # the next hour: upkeep runs again, the entry is now past 30 days
    assert audit.store.count() == 0
