"""Where long work stands: an operation's status (backups, restores, creates … are all
operations) and a migration's. The values are the wire's and the database's strings."""

from __future__ import annotations

from enum import StrEnum


class OperationStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    """An item of a bulk operation that was not done: already so, or not reached after a
    cancel or a --fail-fast stop (its phase says which)."""

    @property
    def final(self) -> bool:
        return self in FINAL


FINAL = frozenset({OperationStatus.SUCCESS, OperationStatus.FAILURE, OperationStatus.CANCELLED,
                   OperationStatus.SKIPPED})
UNFINISHED = frozenset({OperationStatus.PENDING, OperationStatus.RUNNING})


class MigrationStatus(StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"
    UNRESOLVED = "unresolved"
    """The source asked the target to commit and cannot learn whether it did (the target is
    unreachable): the instance is kept stopped here until the target answers or an admin
    decides (``corral migration resolve``)."""
