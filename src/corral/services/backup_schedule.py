"""Daily backup schedules: what corrald backs up on its own, and the loop that starts them.

Split from the backup service (services/backups.py): a schedule names an instance, a target
and a time of day; when it is due, the loop starts an ordinary backup operation through the
backup service, then prunes that instance's backups by the schedule's retention rules.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from corral.backup.retention import Retention
from corral.domain.errors import InvalidInput, NotFound
from corral.services.backups import BackupService
from corral.state.backupstore import ScheduleRecord

log = logging.getLogger("corral.backups")


class BackupSchedules:
    def __init__(self, backups: BackupService) -> None:
        self.backups = backups
        self.store = backups.store

    def set_schedule(self, instance: str, target: str, daily_at: str, rules: Retention) -> None:
        self.backups.instances.store.get_instance(instance)
        self.backups.target_record(target)
        try:
            hour, minute = (int(x) for x in daily_at.split(":"))
            if not (0 <= hour < 24 and 0 <= minute < 60):
                raise ValueError
        except ValueError:
            raise InvalidInput(f"--daily '{daily_at}' is not a time HH:MM") from None
        self.store.set_schedule(ScheduleRecord(
            instance, target, f"{hour:02d}:{minute:02d}", rules.keep_last, rules.keep_daily,
            rules.keep_weekly, None))

    def remove_schedule(self, instance: str, target: str | None = None) -> None:
        """Stop backing ``instance`` up on schedule; ``target``: only if it goes there."""
        found = [s for s in self.store.schedules() if s.instance == instance]
        if not found or (target is not None and found[0].target != target):
            raise NotFound(f"no backup schedule for '{instance}'"
                           + (f" to '{target}'" if target is not None else ""))
        self.store.remove_schedule(instance)

    def due(self, now: datetime) -> list[ScheduleRecord]:
        """Schedules whose time today has passed and that have not run since (pure of I/O
        besides reading the table)."""
        found = []
        for s in self.store.schedules():
            hour, minute = (int(x) for x in s.daily_at.split(":"))
            slot = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
            if slot > now:
                slot -= timedelta(days=1)
            if s.last_run is None or s.last_run < slot:
                found.append(s)
        return found

    def run_due(self, now: datetime) -> list[str]:
        """Start the backups that are due (then prune by their rules); operation ids."""
        started = []
        for s in self.due(now):
            self.store.mark_run(s.instance, now)
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
        if self.backups.instances.ops.wait(op_id, None).status == "success":
            try:
                self.backups.prune(s.target, s.instance, rules)
            except Exception as exc:
                log.warning("scheduled prune of %s failed: %s", s.instance, exc)


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
                self.schedules.run_due(datetime.now())
            except Exception:
                log.exception("backup schedule run failed")

    def stop(self) -> None:
        self._stop.set()
