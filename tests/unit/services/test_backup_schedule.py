"""Backup schedules driven by an injected clock: a real SQLite store, the fake driver and a
real directory target; the scheduler's tick is called directly (no waiting)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from corral.backup.retention import Retention
from corral.domain.errors import InvalidInput
from corral.services.backup_schedule import BackupSchedules
from corral.services.core import Corral, Settings
from tests.integration.conftest import write_fake_template


@pytest.fixture
def corral(tmp_path: Path) -> Iterator[Corral]:
    write_fake_template(tmp_path / "state" / "templates")
    app = Corral(Settings(state_dir=tmp_path / "state", driver_mode="fake", node="n1"))
    app.start()
    op = app.instances.create("web", "ct", "tiny", {"disk": "64M"})
    assert app.operations.wait(op.id, 30).status == "success"
    app.backups.add_target("nas", str(tmp_path / "nas"))
    yield app
    app.close()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_a_time_passed_today_runs_tomorrow_not_at_once(corral: Corral) -> None:
    clock = Clock(datetime(2026, 12, 6, 1, 35, tzinfo=UTC))  # 02:35 in Berlin
    schedules = BackupSchedules(corral.backups, clock, host_zone=lambda: "Europe/Berlin")
    made = schedules.set_schedule("web", "nas", "01:00", Retention(1, 0, 0))
    assert made.tz == "Europe/Berlin"
    assert made.next_run.isoformat() == "2026-12-07T01:00:00+01:00"
    assert [s.next_run for s in schedules.schedules()] == [made.next_run]

    assert schedules.tick() == []  # the scheduler's first tick: nothing is due
    clock.now = datetime(2026, 12, 6, 23, 59, tzinfo=UTC)  # 00:59 Berlin: still not
    assert schedules.tick() == []
    assert corral.backups.list_backups("nas") == []

    clock.now = datetime(2026, 12, 7, 0, 0, 10, tzinfo=UTC)  # 01:00:10 Berlin
    started = schedules.tick()
    assert len(started) == 1
    assert corral.operations.wait(started[0], 30).status == "success"
    assert [m.instance.name for m in corral.backups.list_backups("nas")] == ["web"]
    assert schedules.tick() == []  # once a day
    (shown,) = schedules.schedules()
    assert shown.last_run is not None and shown.last_run.isoformat().startswith(
        "2026-12-07T01:00:10")
    assert shown.next_run.isoformat() == "2026-12-08T01:00:00+01:00"


def test_an_explicit_zone_and_a_bad_one(corral: Corral) -> None:
    clock = Clock(datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
    schedules = BackupSchedules(corral.backups, clock, host_zone=lambda: "UTC")
    made = schedules.set_schedule("web", "nas", "13:30", Retention(), tz="Asia/Tokyo")
    assert made.next_run == datetime(2026, 7, 2, 4, 30, tzinfo=UTC)  # 13:30 JST, tomorrow
    with pytest.raises(InvalidInput, match="'Mars/Olympus' is not a known IANA zone"):
        schedules.set_schedule("web", "nas", "13:30", Retention(), tz="Mars/Olympus")
    assert [s.tz for s in schedules.schedules()] == ["Asia/Tokyo"]  # unchanged


def test_a_schedule_from_before_next_runs_were_kept(corral: Corral) -> None:
    """Rows of migration 0005 have no zone and no next run: the host's zone, and the first
    time after their last run (a missed day runs once) or after now (never run)."""
    from corral.state.backupstore import ScheduleRecord

    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    schedules = BackupSchedules(corral.backups, Clock(now), host_zone=lambda: "UTC")
    corral.backups.store.set_schedule(
        ScheduleRecord("web", "nas", "01:00", 0, 0, 0, None))
    assert schedules.due(now) == []
    assert schedules.due(now + timedelta(hours=13)) != []
    corral.backups.store.set_schedule(ScheduleRecord(
        "web", "nas", "01:00", 0, 0, 0, datetime(2026, 12, 4, 1, 0)))
    assert [s.instance for s in schedules.due(now)] == ["web"]  # missed 12-05 01:00


def test_deleting_the_instance_says_it_removed_its_schedule(corral: Corral) -> None:
    corral.schedules.set_schedule("web", "nas", "03:00", Retention(), tz="UTC")
    op = corral.instances.delete("web", force=True)
    done = corral.operations.wait(op.id, 30)
    assert done.status == "success"
    assert done.phase == "removed its backup schedule (daily 03:00 UTC to nas)"
    assert corral.schedules.schedules() == []
