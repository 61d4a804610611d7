"""Daily backup schedules: what corrald backs up on its own, and the loop that starts them.

Split from the backup service (services/backups.py): a schedule names an instance, a target
and a time of day in a time zone (the host's unless set); when its next run comes, the loop
starts an ordinary backup operation through the backup service, then prunes that instance's
backups by the schedule's retention rules. The next run is computed when the schedule is set
and after every run (``domain/schedule.py``): a time that already passed today comes
tomorrow, and a daemon that was down at that time runs the missed backup once when it is back.
The clock is injectable and ``tick`` is the loop's whole work, so tests drive it directly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from corral.backup.retention import Retention
from corral.domain.errors import NotFound
from corral.domain.schedule import next_daily, parse_daily
from corral.domain.statuses import OperationStatus
from corral.host.timezone import local_zone_name, zone
from corral.services.backups import BackupService
from corral.state.backupstore import ScheduleRecord

log = logging.getLogger("corral.backups")
Clock = Callable[[], datetime]
"""Now, aware."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Schedule:
    """A schedule as shown: its zone resolved and its times aware, in that zone."""

    record: ScheduleRecord
    tz: str
    next_run: datetime
    last_run: datetime | None


class BackupSchedules:
    def __init__(self, backups: BackupService, clock: Clock = utc_now,
                 host_zone: Callable[[], str] = local_zone_name) -> None:
        self.backups = backups
        self.store = backups.store
        self.clock = clock
        self.host_zone = host_zone

    def set_schedule(self, instance: str, target: str, daily_at: str, rules: Retention,
                     tz: str | None = None) -> Schedule:
        """Back ``instance`` up every day at ``daily_at`` in ``tz`` (default: the host's
        zone); the first run is the next time the clock shows it, never at once."""
        self.backups.instances.store.get_instance(instance)
        self.backups.target_record(target)
        at = parse_daily(daily_at)
        name = tz or self.host_zone()
        first = next_daily(at, zone(name), self.clock())
        self.store.set_schedule(ScheduleRecord(
            instance, target, at.strftime("%H:%M"), rules.keep_last, rules.keep_daily,
            rules.keep_weekly, None, name, _naive(first)))
        return self._show(self._one(instance), first)

    def _one(self, instance: str, target: str | None = None) -> ScheduleRecord:
        found = [s for s in self.store.schedules() if s.instance == instance]
        if not found or (target is not None and found[0].target != target):
            raise NotFound(f"no backup schedule for '{instance}'"
                           + (f" to '{target}'" if target is not None else ""))
        return found[0]

    def schedules(self) -> list[Schedule]:
        now = self.clock()
        return [self._show(s, self._next(s, now)) for s in self.store.schedules()]

    def remove_schedule(self, instance: str, target: str | None = None) -> None:
        """Stop backing ``instance`` up on schedule; ``target``: only if it goes there."""
        self._one(instance, target)
        self.store.remove_schedule(instance)

    def forget(self, instance: str) -> str | None:
        """Drop the schedule of a deleted instance; what was removed, said for the user."""
        gone = [s for s in self.store.schedules() if s.instance == instance]
        self.store.forget_schedules(instance=instance)
        return "; ".join(f"removed its backup schedule (daily {s.daily_at} "
                         f"{self._zone_name(s)} to {s.target})" for s in gone) or None

    def _zone_name(self, s: ScheduleRecord) -> str:
        return s.tz or self.host_zone()

    def _next(self, s: ScheduleRecord, now: datetime) -> datetime:
        """The schedule's next run (aware, UTC). A schedule set before next runs were kept
        (migration 0008) has none: the first time after its last run, or after now."""
        if s.next_run is not None:
            return s.next_run.replace(tzinfo=UTC)
        since = s.last_run.replace(tzinfo=UTC) if s.last_run is not None else now
        return next_daily(parse_daily(s.daily_at), zone(self._zone_name(s)), since)

    def _show(self, s: ScheduleRecord, next_run: datetime) -> Schedule:
        name = self._zone_name(s)
        where = zone(name)
        return Schedule(s, name, next_run.astimezone(where),
                        None if s.last_run is None
                        else s.last_run.replace(tzinfo=UTC).astimezone(where))

    def due(self, now: datetime) -> list[ScheduleRecord]:
        """Schedules whose next run has come. One without a next run yet (set before they
        were kept) gets it here, kept so that later ticks see the same."""
        found = []
        for s in self.store.schedules():
            try:
                next_run = self._next(s, now)
            except Exception as exc:  # e.g. its zone left the host's tz database
                log.warning("backup schedule of %s: %s", s.instance, exc)
                continue
            if s.next_run is None:
                self.store.mark_run(s.instance, None, _naive(next_run))
            if next_run <= now:
                found.append(s)
        return found

    def tick(self) -> list[str]:
        """The loop's work, once: start what is due now."""
        return self.run_due(self.clock())

    def run_due(self, now: datetime) -> list[str]:
        """Start the backups that are due (then prune by their rules); operation ids."""
        started = []
        for s in self.due(now):
            following = next_daily(parse_daily(s.daily_at), zone(self._zone_name(s)), now)
            self.store.mark_run(s.instance, _naive(now), _naive(following))
            try:
                op_id = self.backups.create(s.instance, s.target).id
            except Exception as exc:
                log.warning("scheduled backup of %s failed to start: %s", s.instance, exc)
                continue
            started.append(op_id)
            rules = Retention(s.keep_last, s.keep_daily, s.keep_weekly)
            if not rules.empty:
                threading.Thread(target=self._prune_after, args=(op_id, s, rules),
                                 daemon=True).start()
        return started

    def _prune_after(self, op_id: str, s: ScheduleRecord, rules: Retention) -> None:
        if self.backups.instances.ops.wait(op_id, None).status is OperationStatus.SUCCESS:
            try:
                self.backups.prune(s.target, s.instance, rules)
            except Exception as exc:
                log.warning("scheduled prune of %s failed: %s", s.instance, exc)


def _naive(when: datetime) -> datetime:
    """UTC without tzinfo: how the database keeps times."""
    return when.astimezone(UTC).replace(tzinfo=None)


class BackupScheduler:
    """corrald's schedule loop: every ``interval`` seconds, start the backups that are due."""

    def __init__(self, schedules: BackupSchedules, interval: float = 30.0) -> None:
        self.schedules = schedules
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="backup-schedule", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.schedules.tick()
            except Exception:
                log.exception("backup schedule run failed")

    def stop(self) -> None:
        self._stop.set()
