"""The audit log: every mutating API call (who, from where, what, on which instance, with
which result), kept in the daemon's database and read back with filters."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from corral.domain.errors import InvalidInput
from corral.state.auditstore import AuditEntry, AuditFilter, AuditStore
from corral.state.database import utcnow

log = logging.getLogger("corral.audit")

RESULTS = ("ok", "refused", "failed")
_AGO = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def result_of(status: int) -> str:
    """ok (< 400), refused (4xx: the caller's error or the policy's no), failed (5xx)."""
    return "ok" if status < 400 else "refused" if status < 500 else "failed"


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``2026-12-06T10:00:00`` (UTC unless it says otherwise) or a span ago: ``30m``,
    ``2h``, ``7d``, ``1w``."""
    now = now or utcnow()
    match = _AGO.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"since '{text}' is neither a time (2026-12-06T10:00) nor a span "
                           "ago (30m, 2h, 7d, 1w)") from None
    if moment.tzinfo is not None:  # stored times are naive UTC
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


Limits = tuple[timedelta | None, int | None]


class AuditService:
    def __init__(self, store: AuditStore, retention: Callable[[], Limits] = lambda: (None, None),
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.retention = retention
        """(the age, the count) beyond which entries go (None: no such limit): the host
        policy's ``audit_retention`` and ``audit_max_entries`` (services/capacity)."""
        self.clock = clock

    def prune(self) -> int:
        """Apply the retention policy; the number of entries removed. Run by the history
        sampler's hourly maintenance (no thread of its own) and on demand."""
        age, count = self.retention()
        gone = self.store.prune(None if age is None else self.clock() - age, count)
        if gone:
            log.info("audit log: %d entries past the retention policy removed", gone)
        return gone

    def record(self, entry: AuditEntry) -> None:
        self.store.add(entry)

    def query(self, user: str | None = None, instance: str | None = None,
              since: str | None = None, action: str | None = None, result: str | None = None,
              limit: int = 1000) -> list[AuditEntry]:
        if result is not None and result not in RESULTS:
            raise InvalidInput(f"result '{result}' is not one of: {', '.join(RESULTS)}")
        return self.store.query(AuditFilter(
            user=user, instance=instance, since=None if since is None else parse_since(since),
            action=action, result=result, limit=limit))
